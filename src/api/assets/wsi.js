// The one place the browser speaks /wsi (PortSIP WSI 22.3 as facd serves
// it): log in (`auth` with username and password), subscribe to
// queue_events, hand on the `queue_status` snapshot of each queue and every
// `queue_agent_status` update, and reconnect by itself (1 s, 2 s, ... 5 s
// apart) after the connection drops, e.g. when facd restarts. Queues are
// identified by `queue_id`; the snapshot also names the queue's number,
// which `numberOf` returns. Adapting to another WSI message shape means
// changing this file only.

export function follow({ username, password, onQueue, onState, onRemoved, onStatus, onAuthFailed }) {
  let ws = null;
  let stopped = false;
  let attempt = 0;
  let timer = null;
  const numbers = new Map(); // queue_id -> queue number, from queue_status
  const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/wsi';
  const ms = (timestamp) => Number(timestamp) * 1000; // WSI times: Unix seconds, as strings

  function open() {
    onStatus(attempt === 0 ? 'connecting' : 'reconnecting', 0);
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
      } else if (msg.event_type === 'queue_status') {
        numbers.set(msg.queue_id, msg.queue_number);
        onQueue(msg.queue_id, (msg.agents || []).map((a) => ({
          ext: a.agent_extension_number,
          state: a.state,
          since: ms(a.timestamp),
          reason: a.reason || '',
        })));
      } else if (msg.event_type === 'queue_agent_status') {
        for (const a of msg.updated_agents || []) {
          onState(msg.queue_id, a.agent_extension_number, a.state, ms(a.timestamp), a.reason || '');
        }
        for (const a of msg.removed_agents || []) {
          onRemoved(msg.queue_id, a.agent_extension_number);
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
    numberOf(queueId) {
      return numbers.get(queueId);
    },
    close() {
      stopped = true;
      clearTimeout(timer);
      if (ws) ws.close();
    },
  };
}
