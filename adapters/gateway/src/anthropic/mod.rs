//! Anthropic's Messages wire format: `POST /v1/messages` (streaming events
//! `message_start` … `message_stop`, `tool_use` blocks, usage), served by any Chorus
//! model, with errors in Anthropic's `{"type": "error", "error": {...}}` shape.

pub mod messages;

mod error;
mod request;
mod response;

pub use error::AnthropicError;
