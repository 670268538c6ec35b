//! OpenAI's Chat Completions wire format: `POST /v1/chat/completions` (streaming and
//! not) and `GET /v1/models`, with errors in OpenAI's `{"error": {...}}` shape.

pub mod chat;
pub mod models;

mod error;
mod request;
mod response;

pub use error::OpenAiError;
