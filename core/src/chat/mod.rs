//! The surface kit: what every chat surface (Matrix, Discord, Slack) shares — the
//! command set parsed from text, the controls of reactions and buttons ([`Control`]),
//! the context a message comes with, the progressive renderer that turns a run's
//! journal into platform messages, the delivery of core's outcomes
//! ([`RenderHub::deliver`]) and the surface's lifecycle ([`SurfaceHandle`]).
//! `Core::chat_text` / `Core::chat_command` (`dispatch.rs`) carry the commands out.
//! With the `test-util` feature, [`testing`] has a recording sink standing in for a
//! platform.
//!
//! The chat layer sits on the facade: it calls [`crate::Core`], and the facade never
//! calls back into it.

mod command;
mod control;
mod deliver;
mod dispatch;
mod forms;
mod marks;
pub mod render;
pub mod split;
mod surface;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

pub use crate::{SurfaceState, SurfaceStatus};
pub use command::{Command, CommandError, help_text, parse_command};
pub use control::Control;
pub use deliver::{NOT_SENT_PRIVATELY, REPLY_ATTEMPTS, post_reply};
pub use forms::{CommandForms, text_hint};
pub use render::{MessageSink, RenderHub, SinkError, SinkFactory, SinkLimits};
pub use surface::{SupervisedSurface, SurfaceHandle, supervise_surface};

use chorus_model::ids::RunId;
use chorus_store::Identity;

/// Where a chat message came from and which binding it speaks in.
#[derive(Clone, Debug)]
pub struct ChatContext {
    /// The surface's name (`matrix`, `discord`, `slack`).
    pub surface: String,
    /// The binding key on that surface (Matrix: `{room_id}|{thread_root_event_id}`):
    /// one conversation per key.
    pub channel_key: String,
    /// Who wrote: the platform's user id.
    pub identity: Identity,
    /// A name to give a new account, when the surface knows one.
    pub display_name: Option<String>,
}

/// What the surface does after a message or a control.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatOutcome {
    /// Post this markdown as a reply in the binding's thread.
    Reply(String),
    /// A run renders in this binding now: hand it to the surface's [`RenderHub`]
    /// (posting `notice` first, if any).
    Render {
        run_id: RunId,
        notice: Option<String>,
    },
    /// Done; nothing to post (a stop shows in the reply's own final edit).
    Nothing,
    /// `text` is for `to` only (a link code, a balance): posted as a reply where the
    /// channel is already private (a direct chat), otherwise sent through the
    /// surface's private channel with `to` ([`SinkFactory::private_sink`]) and
    /// `notice` posted in the binding's thread instead. `text` is never posted in a
    /// channel others read: when it cannot be sent privately, the thread is told so.
    /// Surfaces with ephemeral replies (Discord, Slack) will deliver it as an
    /// ephemeral reply to `to`.
    Private {
        to: Identity,
        text: String,
        notice: String,
    },
}
