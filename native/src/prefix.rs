//! Prefix fingerprints for provider prompt caching.
//!
//! Providers cache prompts by prefix, built in the order tools, system, messages. One xxh3-128
//! hasher runs over that order (model first, namespace and params left out: the provider cache
//! is shared across tenants of one API key and does not depend on sampling params) and is
//! read at every boundary, so a fingerprint of a request equals the fingerprint at the same
//! boundary of any longer request that starts the same way.
//!
//! Boundaries: after the tools (only when there are tools; `index` = index of the last tool),
//! after the system blocks (only when there are any; `index` = index of the last block) and
//! after each message (`index` = the message's index). Those are exactly the places an
//! Anthropic `cache_control` breakpoint can go.
//!
//! `cumulative_chars` counts characters of canonical content up to the boundary: tool JSON,
//! system text, and per message its text parts, tool names + tool input JSON and tool result
//! content. Roles, ids and the model are framing and are not counted; images count 0 (their
//! token cost is unrelated to their base64 length), so the count never overstates a prefix.

use xxhash_rust::xxh3::Xxh3Default;

use crate::canon::RuleSet;
use crate::key::{tag, Encoder, KeyInput};

/// Label hashed first, distinct from the cache-key label.
pub const PREFIX_FORMAT: &[u8] = b"skinflint/prefix/v1";

/// Which boundary a fingerprint is taken at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefixKind {
    Tools,
    System,
    Message,
}

impl PrefixKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrefixKind::Tools => "tools",
            PrefixKind::System => "system",
            PrefixKind::Message => "message",
        }
    }
}

/// A hash of the request up to one boundary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixFingerprint {
    pub kind: PrefixKind,
    pub index: usize,
    pub hash: u128,
    pub cumulative_chars: u64,
}

impl PrefixFingerprint {
    /// 32 lowercase hex digits.
    pub fn hex(&self) -> String {
        format!("{:032x}", self.hash)
    }
}

/// One fingerprint per boundary present, in prompt order.
pub fn prefix_fingerprints(input: &KeyInput, rules: &RuleSet) -> Vec<PrefixFingerprint> {
    // Destructured so a new field must be considered here too.
    let KeyInput {
        namespace: _, // provider caches are shared across tenants of one key
        model,
        params: _, // sampling params do not change what a provider caches
        tools,
        system,
        messages,
    } = input;

    let mut out = Vec::with_capacity(messages.len() + 2);
    let mut enc = Encoder::new(Xxh3Default::new(), rules);
    let mut chars: u64 = 0;
    enc.label(PREFIX_FORMAT);
    enc.exact(tag::MODEL, model);

    enc.count(tag::TOOLS, tools.len());
    for tool in tools {
        chars += enc.tool(tool) as u64;
    }
    if !tools.is_empty() {
        out.push(PrefixFingerprint {
            kind: PrefixKind::Tools,
            index: tools.len() - 1,
            hash: enc.sink.digest128(),
            cumulative_chars: chars,
        });
    }

    enc.count(tag::SYSTEM, system.len());
    for block in system {
        chars += enc.system_block(block) as u64;
    }
    if !system.is_empty() {
        out.push(PrefixFingerprint {
            kind: PrefixKind::System,
            index: system.len() - 1,
            hash: enc.sink.digest128(),
            cumulative_chars: chars,
        });
    }

    // No message count up front: it would make every prefix depend on the conversation's
    // length. Each message is self-delimiting (tag, role, part count, tagged parts).
    enc.label(&[tag::PREFIX_MESSAGES]);
    for (index, message) in messages.iter().enumerate() {
        enc.label(&[tag::MESSAGE]);
        chars += enc.message(message) as u64;
        out.push(PrefixFingerprint {
            kind: PrefixKind::Message,
            index,
            hash: enc.sink.digest128(),
            cumulative_chars: chars,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn fps(v: Value, rules: &str) -> Vec<PrefixFingerprint> {
        let input = KeyInput::from_value(v).unwrap();
        prefix_fingerprints(&input, &RuleSet::named(rules).unwrap())
    }

    fn request(messages: usize, namespace: &str) -> Value {
        let msgs: Vec<Value> = (0..messages)
            .map(|i| {
                json!({"role": if i % 2 == 0 { "user" } else { "assistant" },
                       "content": [{"type": "text", "text": format!("turn {i}")}]})
            })
            .collect();
        json!({
            "namespace": namespace,
            "model": "claude-sonnet-4-5",
            "params": {"temperature": 0.2},
            "tools": [{"name": "a"}, {"name": "b"}],
            "system": ["be brief"],
            "messages": msgs,
        })
    }

    #[test]
    fn one_fingerprint_per_boundary() {
        let f = fps(request(3, "t"), "exact");
        let kinds: Vec<_> = f.iter().map(|p| (p.kind.as_str(), p.index)).collect();
        assert_eq!(
            kinds,
            vec![
                ("tools", 1),
                ("system", 0),
                ("message", 0),
                ("message", 1),
                ("message", 2)
            ]
        );
        // {"name":"a"} + {"name":"b"} = 24 chars, "be brief" = 8, "turn i" = 6 each.
        let chars: Vec<_> = f.iter().map(|p| p.cumulative_chars).collect();
        assert_eq!(chars, vec![24, 32, 38, 44, 50]);
        assert!(f.iter().all(|p| p.hex().len() == 32));
        let unique: std::collections::HashSet<_> = f.iter().map(|p| p.hash).collect();
        assert_eq!(unique.len(), f.len());
    }

    #[test]
    fn prefixes_are_stable_as_the_conversation_grows() {
        let short = fps(request(2, "t"), "exact");
        let long = fps(request(5, "t"), "exact");
        assert_eq!(short[..], long[..short.len()]);
        // Namespace and params are not part of the provider prefix.
        let mut other = request(2, "other-tenant");
        other["params"] = json!({"temperature": 1.0});
        assert_eq!(fps(other, "exact"), short);
        // The model is.
        let mut other_model = request(2, "t");
        other_model["model"] = json!("claude-opus-4-1");
        assert_ne!(fps(other_model, "exact")[0], short[0]);
    }

    #[test]
    fn absent_sections_have_no_fingerprint() {
        let f = fps(
            json!({"namespace": "n", "model": "m", "messages": [
                {"role": "user", "content": [{"type": "text", "text": "hi"}]}]}),
            "exact",
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, PrefixKind::Message);
        assert_eq!(f[0].cumulative_chars, 2);
        assert!(fps(json!({"namespace": "n", "model": "m"}), "exact").is_empty());
    }

    #[test]
    fn exact_rules_see_every_byte() {
        let mut a = request(1, "t");
        a["system"] = json!(["be  brief"]);
        let b = request(1, "t");
        assert_ne!(fps(a.clone(), "exact")[1], fps(b.clone(), "exact")[1]);
        assert_eq!(fps(a, "conservative")[1], fps(b, "conservative")[1]);
    }
}
