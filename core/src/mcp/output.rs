//! A tool result as text for a model: MCP content blocks flattened in order.

use rmcp::model::{CallToolResult, ContentBlock, ResourceContents};

pub(super) fn result_text(result: &CallToolResult) -> String {
    let mut parts: Vec<String> = result.content.iter().map(block_text).collect();
    if parts.is_empty()
        && let Some(v) = &result.structured_content
    {
        parts.push(v.to_string());
    }
    parts.join("\n")
}

/// One content block as text (media and binary resources are described).
pub(super) fn block_text(block: &ContentBlock) -> String {
    {
        match block {
            ContentBlock::Text(t) => t.text.clone(),
            ContentBlock::Image(i) => {
                format!("[image: {}, {} bytes of base64]", i.mime_type, i.data.len())
            }
            ContentBlock::Audio(a) => {
                format!("[audio: {}, {} bytes of base64]", a.mime_type, a.data.len())
            }
            ContentBlock::Resource(r) => match &r.resource {
                ResourceContents::TextResourceContents { uri, text, .. } => {
                    format!("[resource {uri}]\n{text}")
                }
                ResourceContents::BlobResourceContents { uri, .. } => {
                    format!("[resource {uri}: binary]")
                }
                #[allow(unreachable_patterns)]
                _ => "[resource]".to_string(),
            },
            ContentBlock::ResourceLink(r) => format!("[resource link: {}]", r.uri),
            _ => "[content of a kind Chorus does not show]".to_string(),
        }
    }
}
