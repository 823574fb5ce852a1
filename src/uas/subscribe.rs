//! SUBSCRIBEs of phone keys (RFC 6665 §4.2.1, SPEC §5): the feature-key
//! package `as-feature-event` to the agent's own address, and BLF lamps
//! (`dialog`, RFC 4235; `presence`, RFC 3856) on a star code, which stands
//! for the subscribing agent's own state. A `SetAgentState` or
//! `SetDoNotDisturb` body is applied and durable before the 200; every
//! 200 is followed by a NOTIFY, and every durable change notifies each
//! key it changes. A refresh for a dialog facd does not know (it was
//! restarted) re-establishes the subscription instead of a 481.

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::dialog::DialogId;
use super::journal::Reply;
use super::reply::{self, sent_by, Rq, SubAnswer};
use super::subscription::{counter_base, Doc, Flow, Kind, NewSub, NotifyTemplate, Shows, TooBrief};
use super::translate::{self, dialog_id, dialog_key};
use super::{Now, Peer, Uas};
use crate::engine::{Cause, Command, ReasonRef, Rejection, Target};
use crate::sip::blf::LampTarget;
use crate::sip::build;
use crate::sip::feature_sync::{self, AcdState, FeatureRequest};
use crate::sip::message::Request;
use crate::sip::values::{accepts_multipart, event_type, media_type};
use crate::sip::{dialog_info, pidf};
use crate::sip::{ALLOW, ALLOW_EVENTS, SERVER};
use crate::transaction::TxId;

impl<F: Clone, W> Uas<F, W> {
    /// A SUBSCRIBE (RFC 6665 §4.2.1, SPEC §5).
    pub(super) fn on_subscribe(&mut self, now: Now, rq: Rq<'_, F>) {
        let (req, peer) = (rq.req, rq.peer);
        // RFC 6665 §4.2.1.1: an unknown package is 489 with Allow-Events.
        let event = req.headers.get("Event").map(|v| event_type(&v));
        let presence = match event.as_deref() {
            Some(feature_sync::EVENT) => None,
            Some(dialog_info::EVENT) => Some(false),
            Some(pidf::EVENT) => Some(true),
            _ => {
                return self.reply(now, rq, 489, "Bad Event", |b| {
                    b.header("Allow-Events", ALLOW_EVENTS)
                })
            }
        };
        // RFC 3261 §8.2.3: a body we cannot read. Lamps take none (RFC 4235
        // §3.2 filters are not supported: an empty Accept, RFC 3261 §20.1).
        if !req.body.is_empty() {
            let ctype = req.headers.get("Content-Type").map(|v| media_type(&v));
            let accept = match presence {
                None if ctype.as_deref() == Some(feature_sync::CONTENT_TYPE) => None,
                None => Some(feature_sync::CONTENT_TYPE),
                Some(_) => Some(""),
            };
            if let Some(accept) = accept {
                return self.reply(now, rq, 415, "Unsupported Media Type", |b| {
                    b.header("Accept", accept)
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
        // What the address stands for, before authenticating: a lamp is
        // one of the star codes (or toggles) with the agent's own state.
        let user = req.uri.user_unescaped(req.headers.buf());
        let lamp = match presence {
            None => None,
            Some(presence) => match user.as_deref().map(|u| self.lamps.parse(u)) {
                Some(Ok(target)) => Some((target, presence)),
                _ => return self.reply(now, rq, 404, "Not Found", |b| b),
            },
        };
        let Some(agent) = self.authenticate(now, rq) else {
            return;
        };
        if !self.engine.has_agent(&agent) {
            let (status, reason) = translate::sip_status(Rejection::UnknownAgent);
            return self.reply(now, rq, status, reason, |b| b);
        }
        let kind = match lamp {
            Some((target, presence)) => {
                if let Err(r) = self.check_lamp(&agent, &target) {
                    let (status, reason) = translate::sip_status(r);
                    info!(%agent, status, reason, "BLF SUBSCRIBE refused");
                    return self.reply(now, rq, status, reason, |b| b);
                }
                Kind::Lamp {
                    target,
                    presence,
                    entity: String::from_utf8_lossy(req.at(req.base.to.uri.raw)).into_owned(),
                }
            }
            None => {
                // SPEC §5: a phone subscribes to its own address of record only.
                let as_str = |u: Option<Vec<u8>>| u.and_then(|u| String::from_utf8(u).ok());
                let own = as_str(user).as_deref() == Some(agent.as_str())
                    && as_str(req.base.to.uri.user_unescaped(req.headers.buf())).as_deref()
                        == Some(agent.as_str());
                if !own {
                    info!(%agent, "SUBSCRIBE to another address refused");
                    let reason = "Forbidden - Subscribe To Your Own Address";
                    return self.reply(now, rq, 403, reason, |b| b);
                }
                // RFC 6665 §3.1.3: the SUBSCRIBE's Accept lists the bodies
                // its NOTIFYs may carry; without one, BroadWorks' multipart.
                let accepts: Vec<Bytes> = req.headers.get_all("Accept").collect();
                Kind::Features {
                    multipart: accepts.is_empty() || accepts.iter().any(|a| accepts_multipart(a)),
                }
            }
        };
        let in_dialog = req.base.to.tag.is_some();
        let known = in_dialog && self.subs.contains(&dialog_key(req));
        if known {
            // A dialog of another agent's or package is as good as none
            // (RFC 6665 §4.2.1.2).
            let same = self.subs.agent_of(&dialog_key(req)) == Some(agent.as_str())
                && self.subs.event_of(&dialog_key(req)) == Some(kind.event());
            if !same {
                return self.reply(now, rq, 481, "Subscription Does Not Exist", |b| b);
            }
        } else {
            if expires > 0 && self.subs.is_full() {
                let reason = "Service Unavailable - Too Many Subscriptions";
                return self.reply(now, rq, 503, reason, |b| b.header("Retry-After", "60"));
            }
            if in_dialog {
                // Our dialog from before a restart (subscriptions are not
                // persisted): taken up again with a full NOTIFY, so the
                // phone need not notice (issue 14).
                let call_id = String::from_utf8_lossy(req.call_id());
                info!(%agent, %call_id, event = kind.event(), "subscription re-established from a refresh");
            }
        }
        let request = if req.body.is_empty() {
            None
        } else {
            match feature_sync::parse_request(req.body()) {
                Ok(r) => Some(r),
                Err(e) => {
                    info!(%agent, error = %e, "SUBSCRIBE body refused");
                    let reason = format!("Bad Request - {e}");
                    return self.reply(now, rq, 400, &reason, |b| b);
                }
            }
        };
        let answer = |uas: &mut Self, shows| {
            uas.subscribe_answer(
                req,
                peer,
                agent.clone(),
                expires,
                known,
                kind.clone(),
                shows,
            )
        };
        let id = rq.id;
        match request {
            None => {
                let a = answer(self, Shows::Full);
                self.establish(now, id, *a)
            }
            Some(FeatureRequest::SetAgentState { state, reason }) => {
                let before = self.keys_of(&agent).0;
                let a = answer(self, Shows::Acd { before });
                let cmd = translate::set_agent_state_command(state, reason, &agent);
                self.apply_for_request(now, rq, vec![cmd], Cause::FeatureSync, |_, _| {
                    Reply::Subscribe { id, answer: a }
                });
            }
            Some(FeatureRequest::SetDoNotDisturb { on }) => {
                let Some(dnd) = self.dnd_reason.clone() else {
                    info!(%agent, "SetDoNotDisturb refused: no [feature_keys] dnd_reason");
                    let reason = "Forbidden - Do Not Disturb Not Configured";
                    return self.reply(now, rq, 403, reason, |b| b);
                };
                let cmds = if on {
                    // Not ready with the DND reason wherever logged in
                    // (refused 403 Not Logged In when that is nowhere).
                    vec![Command::NotReady {
                        agent: agent.as_str().into(),
                        target: Target::All,
                        reason: Some(ReasonRef::Name(dnd)),
                    }]
                } else {
                    let code = self.engine.reason_code(&dnd).unwrap_or_default();
                    let queues = translate::key_queues(&self.engine, &agent);
                    translate::dnd_off_commands(&translate::key_views(&queues), code, &agent)
                };
                let a = answer(self, Shows::Dnd);
                if cmds.is_empty() {
                    return self.establish(now, id, *a);
                }
                self.apply_for_request(now, rq, cmds, Cause::FeatureSync, |_, _| {
                    Reply::Subscribe { id, answer: a }
                });
            }
            Some(FeatureRequest::SetForwarding {
                kind: fwd,
                activate,
                ..
            }) => {
                if activate {
                    info!(%agent, kind = fwd.as_str(), "SetForwarding answered off: facd forwards no calls");
                }
                let a = answer(self, Shows::Forwarding(fwd));
                self.establish(now, id, *a)
            }
        }
    }

    /// A lamp on a queue must be on one of the agent's queues and a reason
    /// configured, as for dialling the code (SPEC §4 refusals).
    fn check_lamp(&self, agent: &str, target: &LampTarget) -> Result<(), Rejection> {
        if let Some(q) = &target.queue {
            let member = self
                .engine
                .agent(agent)
                .is_some_and(|v| v.queues.iter().any(|m| m.queue.as_str() == q));
            if !member {
                return Err(if self.engine.has_queue(q) {
                    Rejection::NotAMember
                } else {
                    Rejection::UnknownQueue
                });
            }
        }
        if let crate::sip::blf::LampKind::NotReady { reason: Some(r) } = target.kind {
            if !self.engine.has_reason_code(r) {
                return Err(Rejection::UnknownReason);
            }
        }
        Ok(())
    }

    /// The 200 to a SUBSCRIBE and what its subscription needs.
    #[allow(clippy::too_many_arguments)]
    fn subscribe_answer(
        &mut self,
        req: &Request,
        peer: &Peer<F>,
        agent: String,
        expires: u32,
        refresh: bool,
        kind: Kind,
        shows: Shows,
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
        let remote = reply::contact_target(req);
        let from = reply::local_party(req, &tag);
        let template = NotifyTemplate {
            request_uri: remote
                .clone()
                .unwrap_or_else(|| Bytes::copy_from_slice(req.at(req.base.from.uri.raw))),
            transport: peer.transport.as_str(),
            local_sent_by: sent_by(peer.local),
            from,
            to: Bytes::copy_from_slice(req.at(req.base.from.raw)),
            call_id: dialog.call_id.clone(),
            route_set: reply::route_set(req),
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
            kind,
            shows,
        })
    }

    /// Sends the 200 to a SUBSCRIBE, then the NOTIFY it asks for (RFC 6665
    /// §4.2.1.2).
    pub(super) fn establish(&mut self, now: Now, id: TxId, a: SubAnswer<F>) {
        self.metrics
            .response(&crate::sip::message::Method::Subscribe, 200);
        self.txs.respond(now.mono, id, 200, a.ok);
        let docs = self.docs_for(&a.agent, &a.kind, a.shows);
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
                .refresh(now.mono, &a.dialog, a.expires, flow, &docs)
            {
                debug!(agent = %a.agent, "subscription ended while its refresh was saved");
            }
        } else {
            info!(agent = %a.agent, event = a.kind.event(), expires = a.expires, "subscription");
            let new = NewSub {
                id: a.dialog,
                agent: a.agent,
                peer: a.dest,
                reliable: a.reliable,
                template: a.template,
                expires: a.expires,
                kind: a.kind,
                base: counter_base(now.wall),
            };
            if self.subs.subscribe(now.mono, new, &docs).is_err() {
                warn!("subscription table filled while a key press was saved: no NOTIFYs");
            }
        }
    }

    /// What the agent's ACD key shows now, and whether DND is on.
    pub(super) fn keys_of(&self, agent: &str) -> (AcdState, bool) {
        let queues = translate::key_queues(&self.engine, agent);
        let views = translate::key_views(&queues);
        (AcdState::from_queues(&views), self.dnd(&views))
    }

    /// DND on, from the views ([`translate::dnd_on`]).
    pub(super) fn dnd(&self, views: &[crate::sip::agent_view::QueueView<'_>]) -> bool {
        let code = self
            .dnd_reason
            .as_ref()
            .and_then(|r| self.engine.reason_code(r));
        translate::dnd_on(views, code)
    }

    /// The documents the NOTIFY after a SUBSCRIBE carries.
    fn docs_for(&self, agent: &str, kind: &Kind, shows: Shows) -> Vec<Doc> {
        let queues = translate::key_queues(&self.engine, agent);
        let views = translate::key_views(&queues);
        let acd = AcdState::from_queues(&views);
        let dnd = self.dnd(&views);
        match (kind, shows) {
            (Kind::Lamp { target, .. }, _) => vec![Doc::Lamp(target.lamp(&views))],
            (Kind::Features { .. }, Shows::Full) => vec![Doc::Full { acd, dnd }],
            (Kind::Features { .. }, Shows::Acd { before }) => {
                if before == AcdState::LoggedOff && acd != AcdState::LoggedOff {
                    vec![Doc::Acd(AcdState::LoggedOn), Doc::Acd(acd)]
                } else {
                    vec![Doc::Acd(acd)]
                }
            }
            (Kind::Features { .. }, Shows::Dnd) => vec![Doc::Dnd(dnd)],
            (Kind::Features { .. }, Shows::Forwarding(k)) => vec![Doc::Forwarding(k)],
        }
    }
}
