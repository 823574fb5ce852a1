// The one place the browser speaks /wsi (PortSIP WSI pub/sub as facd serves
// it): log in, subscribe to queue events, hand each agent update to
// `onState`, and reconnect by itself (1 s, 2 s, ... 5 s apart) after the
// connection drops, e.g. when facd restarts. Adapting to another WSI message
// shape means changing this file only.

export function follow({ username, password, onState, onStatus, onAuthFailed }) {
  let ws = null;
  let stopped = false;
  let attempt = 0;
  let timer = null;
  const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/wsi';

  function open() {
    onStatus('connecting', 0);
    ws = new WebSocket(url);
    ws.onopen = () => {
      ws.send(JSON.stringify({ command: 'auth', username, password }));
    };
    ws.onmessage = (m) => {
      let msg;
      try {
        msg = JSON.parse(m.data);
      } catch (_) {
        return;
      }
      if (msg.command === 'auth') {
        if (msg.status === 0) {
          attempt = 0;
          ws.send(JSON.stringify({ command: 'subscribe', topics: ['queue_events'] }));
          onStatus('live', 0);
        } else {
          stopped = true;
          onAuthFailed(msg.error || 'login refused');
          ws.close();
        }
      } else if (msg.event_type === 'queue_agent_status') {
        for (const a of msg.updated_agents || []) {
          onState(msg.queue_number, a.agent_extension_number, a.state, Number(a.timestamp) * 1000);
        }
      }
    };
    ws.onclose = () => {
      if (stopped) return;
      attempt += 1;
      const delay = Math.min(1000 * attempt, 5000);
      onStatus('reconnecting', delay);
      timer = setTimeout(open, delay);
    };
  }

  open();
  return {
    close() {
      stopped = true;
      clearTimeout(timer);
      if (ws) ws.close();
    },
  };
}
