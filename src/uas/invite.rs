//! Star-code INVITEs (SPEC §4), toggle codes included (`*45`, `*46`: log
//! in or out, READY or NOT_READY, by the agent's state): content checks,
//! SDP negotiation, the engine command, the 200 with its dialog; and the ACK (RFC 3261 §13.2.2.4,
//! an SDP answer in it, RFC 3264 §4) and CANCEL (RFC 3261 §9.2) that follow.

use bytes::Bytes;
use rand::Rng;
use tracing::debug;

use super::dialog::{ByeTemplate, DialogId, ToneSource};
use super::journal::Reply;
use super::reply::{self, sent_by, Answer, Rq};
use super::translate::{self, dialog_id, dialog_key};
use super::{Now, Peer, Uas};
use crate::engine::{Applied, Cause};
use crate::media::ToneTarget;
use crate::sip::build;
use crate::sip::message::{Method, Request};
use crate::sip::star_code::StarCode;
use crate::sip::values::{accepts_sdp, media_type};
use crate::sip::{sdp, ACCEPT, ALLOW, SERVER};
use crate::transaction::TxId;

impl<F: Clone, W> Uas<F, W> {
    pub(super) fn on_invite(&mut self, now: Now, rq: Rq<'_, F>) {
        let (req, peer) = (rq.req, rq.peer);
        if req.base.to.tag.is_some() {
            // A re-INVITE: our calls last a second and never change media.
            let known = self.dialogs.contains(&dialog_key(req));
            let (status, reason) = if known {
                (488, "Not Acceptable Here")
            } else {
                (481, "Call/Transaction Does Not Exist")
            };
            return self.reply(now, rq, status, reason, |b| b);
        }
        if self.refused_while_draining(now, rq) {
            return;
        }
        if self.dialogs.is_full() {
            return self.reply(now, rq, 503, "Service Unavailable - Too Many Calls", |b| {
                b.header("Retry-After", "1")
            });
        }
        // RFC 3261 §8.2.3: content processing.
        if !req.body.is_empty() {
            let ctype = req.headers.get("Content-Type").map(|v| media_type(&v));
            if ctype.as_deref() != Some("application/sdp") {
                return self.reply(now, rq, 415, "Unsupported Media Type", |b| {
                    b.header("Accept", ACCEPT)
                });
            }
        }
        // RFC 3261 §21.4.7: our 200 carries SDP; refuse callers that cannot take it.
        let accepts: Vec<Bytes> = req.headers.get_all("Accept").collect();
        if !accepts.is_empty() && !accepts.iter().any(|a| accepts_sdp(a)) {
            return self.reply(now, rq, 406, "Not Acceptable", |b| {
                b.header("Accept", ACCEPT)
            });
        }
        // A star code, or a toggle code (issue 14), whose action depends on
        // the agent's state and is decided once the agent is known.
        let user = req.uri.user_unescaped(req.headers.buf());
        let dialled = match user.as_deref().map(|u| self.codes.parse(u)) {
            Some(Ok(code)) => Ok(code),
            _ => match user.as_deref().map(|u| self.lamps.parse(u)) {
                Some(Ok(target)) if target.toggle => Err(target),
                _ => return self.reply(now, rq, 404, "Not Found", |b| b),
            },
        };
        let Some(agent) = self.authenticate(now, rq) else {
            return;
        };
        let code = match dialled {
            Ok(code) => code,
            Err(toggle) => {
                let queues = translate::key_queues(&self.engine, &agent);
                let Some(action) = toggle.toggle_action(&translate::key_views(&queues)) else {
                    return self.reply(now, rq, 404, "Not Found", |b| b);
                };
                StarCode {
                    action,
                    queue: toggle.queue,
                    reason: None,
                }
            }
        };
        let local = self.media_addr(peer);
        let session = self.rng.gen::<u32>() as u64;
        let (body, media) = if req.body.is_empty() {
            (sdp::offer(local, session), ToneSource::AnswerInAck)
        } else {
            match sdp::parse_offer(req.body()).and_then(|o| sdp::answer(&o, local, session)) {
                Ok(a) => (
                    a.body,
                    ToneSource::Offer(ToneTarget::new(a.codec, local, a.remote_rtp)),
                ),
                Err(sdp::SdpError::Malformed) => {
                    return self.reply(now, rq, 400, "Bad Request - Malformed SDP", |b| b)
                }
                Err(sdp::SdpError::NoCommonCodec) => {
                    let reason = "Not Acceptable Here - PCMU or PCMA Only";
                    return self.reply(now, rq, 488, reason, |b| b);
                }
            }
        };
        let id = rq.id;
        self.apply_for_request(
            now,
            rq,
            vec![translate::star_code_command(&code, &agent)],
            Cause::Fac,
            |uas, applied| Reply::Sip {
                id,
                answer: Box::new(Answer {
                    media,
                    ..uas.answer(req, peer, applied, body)
                }),
            },
        );
    }

    /// Sends the 200 and starts the dialog.
    pub(super) fn deliver(&mut self, now: Now, id: TxId, a: Answer<F>) {
        self.dialogs.answered(
            now.mono,
            a.dialog,
            a.ok.clone(),
            a.dest,
            a.reliable,
            a.bye,
            self.cfg.confirm,
            a.media,
        );
        self.metrics.response(&Method::Invite, 200);
        self.txs.respond(now.mono, id, 200, a.ok);
    }

    /// The 200 for an applied star code, and the dialog that follows it.
    fn answer(
        &mut self,
        req: &Request,
        peer: &Peer<F>,
        applied: &Applied,
        sdp: String,
    ) -> Answer<F> {
        let tag = self.new_tag();
        let contact = self.contact(req, peer);
        let bytes = build::response(req, peer.addr, 200, "OK")
            .to_tag(&tag)
            .record_route(req)
            .header("Contact", &contact)
            .header("Allow", ALLOW)
            .header("Supported", "")
            .header("Server", SERVER)
            .header("X-Agent-State", translate::agent_state_header(applied))
            .body("application/sdp", Bytes::from(sdp))
            .build();
        let dialog = DialogId {
            local_tag: Bytes::from(tag.clone()),
            ..dialog_id(req)
        };
        let remote_target = reply::contact_target(req)
            .unwrap_or_else(|| Bytes::copy_from_slice(req.at(req.base.from.uri.raw)));
        let bye = ByeTemplate {
            request_uri: remote_target,
            transport: peer.transport.as_str(),
            local_sent_by: sent_by(peer.local),
            from: reply::local_party(req, &tag),
            to: Bytes::copy_from_slice(req.at(req.base.from.raw)),
            call_id: dialog.call_id.clone(),
            route_set: reply::route_set(req),
            contact: None,
        };
        let dest = reply::dialog_dest(peer, &bye.route_set, &bye.request_uri, &dialog.call_id);
        Answer {
            ok: bytes,
            dialog,
            dest,
            reliable: peer.reliable(),
            bye,
            media: ToneSource::AnswerInAck,
        }
    }

    pub(super) fn on_ack(&mut self, now: Now, req: &Request, peer: &Peer<F>) {
        // When the INVITE had no offer, the caller's answer is in the ACK
        // (RFC 3264 §4, RFC 3261 §13.2.1); an ACK without one plays nothing.
        let sdp_body = !req.body.is_empty()
            && req
                .headers
                .get("Content-Type")
                .map(|v| media_type(&v))
                .as_deref()
                == Some("application/sdp");
        let media = sdp_body
            .then(|| sdp::parse_offer(req.body()).ok())
            .flatten()
            .and_then(|a| sdp::remote_media(&a))
            .and_then(|(codec, remote)| {
                ToneTarget::new(codec, self.media_addr(peer), Some(remote))
            });
        if !self.dialogs.ack(now.mono, &dialog_key(req), media) {
            debug!(call_id = %String::from_utf8_lossy(req.call_id()), "ACK for no dialog dropped");
        }
    }

    pub(super) fn on_cancel(
        &mut self,
        now: Now,
        cancel: TxId,
        invite: Option<TxId>,
        req: &Request,
        peer: &Peer<F>,
    ) {
        let rq = Rq {
            id: cancel,
            req,
            peer,
        };
        // RFC 3261 §9.2: 481 when no INVITE matches; otherwise 200, and the
        // INVITE, if still unanswered, gets 487 and nothing is applied. A
        // star code is applied as soon as it arrives, so the only INVITE
        // still unanswered is one whose change is being made durable: that
        // change has happened, and its 200 goes out once written (§9.2 makes
        // the 487 a SHOULD; a 2xx after a CANCEL is normal for the caller,
        // §9.1), rather than a 487 that would claim nothing changed.
        let Some(invite) = invite else {
            return self.reply(now, rq, 481, "Call/Transaction Does Not Exist", |b| b);
        };
        self.reply(now, rq, 200, "OK", |b| b);
        if !self.txs.is_final(invite) && !self.journal.awaits(invite) {
            // The 487 carries the INVITE's CSeq method (RFC 3261 §9.2): same
            // headers as the CANCEL otherwise.
            let bytes = build::response(req, peer.addr, 487, "Request Terminated")
                .cseq_method(&Method::Invite)
                .to_tag(&self.new_tag())
                .header("Server", SERVER)
                .build();
            self.metrics.response(&Method::Invite, 487);
            self.txs.respond(now.mono, invite, 487, bytes);
        }
    }
}
