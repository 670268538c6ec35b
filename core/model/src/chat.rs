//! The shared vocabulary of a conversation with a model: messages, roles, tools
//! offered and tool calls made. Providers translate these to their wire formats; the
//! store persists tool rounds built from them; neither needs the other to do so.

use serde::Serialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatRole {
    System,
    #[default]
    User,
    Assistant,
    /// The result of a tool call, answering an assistant message's `tool_calls`.
    Tool,
}

/// One message of a request's history.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChatMessage {
    pub role: ChatRole,
    /// The text (for a `Tool` message: the tool's output).
    pub content: String,
    /// Assistant messages: the tool calls the model made (possibly several, in order).
    pub tool_calls: Vec<ToolCall>,
    /// `Tool` messages: the id of the call this answers.
    pub tool_call_id: Option<String>,
    /// `Tool` messages: the name of the tool called (Gemini and Ollama key results by name).
    pub tool_name: Option<String>,
    /// `Tool` messages: whether the output is an error report.
    pub is_error: bool,
}

impl ChatMessage {
    /// A plain text message.
    pub fn text(role: ChatRole, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            ..Default::default()
        }
    }
}

/// A tool offered to the model: a name, what it does, and its parameters as a JSON
/// Schema object. Names are already safe for every provider (`[a-zA-Z0-9_-]{1,64}`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: serde_json::Value,
}

/// A complete tool call, assembled from however the provider streamed it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ToolCall {
    /// The provider's call id (generated when the provider has none, as Gemini and
    /// Ollama do), used to pair the result with the call.
    pub id: String,
    pub name: String,
    /// The arguments as a JSON value (an object); `{}` when the model sent none.
    pub arguments: serde_json::Value,
}
