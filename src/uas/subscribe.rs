//! Feature-key SUBSCRIBEs (RFC 6665 §4.2.1, SPEC §5): only
//! `as-feature-event`, only by the agent for its own address; a
//! `SetAgentState` body is applied and durable before the 200; the first
//! NOTIFY carries the agent's state, and every durable change notifies.

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::dialog::DialogId;
use super::journal::Reply;
use super::reply::{self, sent_by, Rq, SubAnswer};
use super::subscription::{Flow, NotifyTemplate, TooBrief};
use super::translate::{self, dialog_id, dialog_key};
use super::{Now, Peer, Uas};
use crate::engine::{Cause, Rejection};
use crate::sip::build;
use crate::sip::feature_sync;
use crate::sip::message::Request;
use crate::sip::values::{contact_uri, event_type, media_type};
use crate::sip::{ALLOW, ALLOW_EVENTS, SERVER};
use crate::transaction::TxId;

impl<F: Clone, W> Uas<F, W> {
    /// A SUBSCRIBE (RFC 6665 §4.2.1, SPEC §5).
    pub(super) fn on_subscribe(&mut self, now: Now, rq: Rq<'_, F>) {
        let (req, peer) = (rq.req, rq.peer);
        // RFC 6665 §4.2.1.1: an unknown package is 489 with Allow-Events.
        let event = req.headers.get("Event").map(|v| event_type(&v));
        if event.as_deref() != Some(feature_sync::EVENT) {
            return self.reply(now, rq, 489, "Bad Event", |b| {
                b.header("Allow-Events", ALLOW_EVENTS)
            });
        }
        // RFC 3261 §8.2.3: a body we cannot read.
        if !req.body.is_empty() {
            let ctype = req.headers.get("Content-Type").map(|v| media_type(&v));
            if ctype.as_deref() != Some(feature_sync::CONTENT_TYPE) {
                return self.reply(now, rq, 415, "Unsupported Media Type", |b| {
                    b.header("Accept", feature_sync::CONTENT_TYPE)
                });
            }
        }
        let requested = match req.headers.get("Expires") {
            None => None,
            Some(v) => match std::str::from_utf8(&v)
                .ok()
                .map(str::trim)
                .map(str::parse::<u64>)
            {
                Some(Ok(n)) => Some(u32::try_from(n).unwrap_or(u32::MAX)),
                _ => return self.reply(now, rq, 400, "Bad Request - Malformed Expires", |b| b),
            },
        };
        // RFC 6665 §4.2.1.1: too short is 423 with Min-Expires.
        let expires = match self.subs.bounds().grant(requested) {
            Ok(e) => e,
            Err(TooBrief { min }) => {
                return self.reply(now, rq, 423, "Interval Too Brief", |b| {
                    b.header("Min-Expires", min.to_string())
                })
            }
        };
        if self.refused_while_draining(now, rq) {
            return;
        }
        let Some(agent) = self.authenticate(now, rq) else {
            return;
        };
        // SPEC §5: a phone subscribes to its own address of record only.
        let user = |u: Option<Vec<u8>>| u.and_then(|u| String::from_utf8(u).ok());
        let own = user(req.uri.user_unescaped(req.headers.buf())).as_deref()
            == Some(agent.as_str())
            && user(req.base.to.uri.user_unescaped(req.headers.buf())).as_deref()
                == Some(agent.as_str());
        if !own {
            info!(%agent, "SUBSCRIBE to another address refused");
            let reason = "Forbidden - Subscribe To Your Own Address";
            return self.reply(now, rq, 403, reason, |b| b);
        }
        if !self.engine.has_agent(&agent) {
            let (status, reason) = translate::sip_status(Rejection::UnknownAgent);
            return self.reply(now, rq, status, reason, |b| b);
        }
        let refresh = req.base.to.tag.is_some();
        // A dialog of another agent's is as good as none (RFC 6665 §4.2.1.2);
        // also what a phone gets after a restart: it then subscribes anew.
        if refresh && self.subs.agent_of(&dialog_key(req)) != Some(agent.as_str()) {
            return self.reply(now, rq, 481, "Subscription Does Not Exist", |b| b);
        }
        if !refresh && expires > 0 && self.subs.is_full() {
            let reason = "Service Unavailable - Too Many Subscriptions";
            return self.reply(now, rq, 503, reason, |b| b.header("Retry-After", "60"));
        }
        let set = if req.body.is_empty() {
            None
        } else {
            match feature_sync::parse_set_agent_state(req.body()) {
                Ok(set) => Some(set),
                Err(e) => {
                    info!(%agent, error = %e, "SUBSCRIBE body refused");
                    let reason = format!("Bad Request - {e}");
                    return self.reply(now, rq, 400, &reason, |b| b);
                }
            }
        };
        let answer = self.subscribe_answer(req, peer, agent.clone(), expires, refresh);
        let Some(set) = set else {
            return self.establish(now, rq.id, *answer);
        };
        let id = rq.id;
        self.apply_for_request(
            now,
            rq,
            translate::set_agent_state_command(&set, &agent),
            Cause::FeatureSync,
            |_, _, fail| Reply::Subscribe { id, answer, fail },
        );
    }

    /// The 200 to a SUBSCRIBE and what its subscription needs.
    fn subscribe_answer(
        &mut self,
        req: &Request,
        peer: &Peer<F>,
        agent: String,
        expires: u32,
        refresh: bool,
    ) -> Box<SubAnswer<F>> {
        let tag = match req.to_tag() {
            Some(t) => String::from_utf8_lossy(t).into_owned(),
            None => self.new_tag(),
        };
        let contact = self.contact(req, peer);
        let ok = build::response(req, peer.addr, 200, "OK")
            .to_tag(&tag)
            .record_route(req)
            .header("Contact", &contact)
            .header("Expires", expires.to_string())
            .header("Allow", ALLOW)
            .header("Server", SERVER)
            .build();
        let dialog = DialogId {
            local_tag: Bytes::from(tag.clone()),
            ..dialog_id(req)
        };
        let remote = req
            .headers
            .get_all("Contact")
            .next()
            .map(|c| contact_uri(&c));
        let from = if refresh {
            Bytes::copy_from_slice(req.at(req.base.to.raw))
        } else {
            Bytes::from(format!(
                "{};tag={tag}",
                String::from_utf8_lossy(req.at(req.base.to.raw))
            ))
        };
        let template = NotifyTemplate {
            request_uri: remote
                .clone()
                .unwrap_or_else(|| Bytes::copy_from_slice(req.at(req.base.from.uri.raw))),
            transport: peer.transport.as_str(),
            local_sent_by: sent_by(peer.local),
            from,
            to: Bytes::copy_from_slice(req.at(req.base.from.raw)),
            call_id: dialog.call_id.clone(),
            route_set: req
                .headers
                .get_all("Record-Route")
                .map(|r| Bytes::copy_from_slice(&r))
                .collect(),
            contact: Some(contact),
        };
        // NOTIFYs go back over the flow the SUBSCRIBE came on (SPEC §4);
        // over TCP, once that connection has closed, over one the shell
        // opens to the next hop (RFC 3261 §18.1.1): the first Route of the
        // dialog's route set (a refresh keeps the original, RFC 3261
        // §12.2.1.2), else the latest Contact.
        let (routes, target): (&[Bytes], &[u8]) = match self.subs.remote(&dialog) {
            Some((routes, uri)) if refresh => (routes, remote.as_deref().unwrap_or(uri)),
            _ => (&template.route_set, &template.request_uri),
        };
        let dest = reply::dialog_dest(peer, routes, target, &dialog.call_id);
        Box::new(SubAnswer {
            ok,
            dialog,
            agent,
            dest,
            reliable: peer.reliable(),
            expires,
            refresh,
            contact: remote,
            template,
        })
    }

    /// Sends the 200 to a SUBSCRIBE, then the NOTIFY with the agent's
    /// current state (RFC 6665 §4.2.1.2).
    pub(super) fn establish(&mut self, now: Now, id: TxId, a: SubAnswer<F>) {
        self.metrics
            .response(&crate::sip::message::Method::Subscribe, 200);
        self.txs.respond(now.mono, id, 200, a.ok);
        let body = self.feature_body(&a.agent);
        if a.refresh {
            let flow = Flow {
                contact: a.contact,
                peer: a.dest,
                reliable: a.reliable,
                transport: a.template.transport,
                local_sent_by: a.template.local_sent_by,
            };
            if !self
                .subs
                .refresh(now.mono, &a.dialog, a.expires, flow, body)
            {
                debug!(agent = %a.agent, "subscription ended while its refresh was saved");
            }
        } else {
            info!(agent = %a.agent, expires = a.expires, "feature-key subscription");
            if self
                .subs
                .subscribe(
                    now.mono, a.dialog, a.agent, a.dest, a.reliable, a.template, a.expires, body,
                )
                .is_err()
            {
                warn!("subscription table filled while a SetAgentState was saved: no NOTIFYs");
            }
        }
    }

    /// The feature-key NOTIFY body for `agent` now.
    pub(super) fn feature_body(&self, agent: &str) -> Bytes {
        translate::feature_body(&self.engine, agent)
    }
}
