//! Cache keys: the request shape ([`KeyInput`]), its unambiguous encoding and its xxh3-128.
//!
//! # Encoding (format `skinflint/key/v1`)
//!
//! The key is xxh3-128 of this byte stream (streamed into the hasher, never built whole):
//!
//! * the format label [`KEY_FORMAT`];
//! * every scalar field as `tag: u8 ++ len: u64 LE ++ bytes`;
//! * every list as `tag: u8 ++ count: u64 LE` followed by its items;
//! * optional fields as `tag ++ 0u8` (absent) or `tag ++ 1u8 ++ len ++ bytes` (present);
//! * text (system blocks, text parts, string tool results) after the rule set's text rules;
//!   params, tools, tool inputs and structured tool results as the rule set's canonical JSON;
//!   namespace, model, roles, ids, tool names, media types, image data and urls byte-exact.
//!
//! Because every field is tagged and length-prefixed and every list is counted, two different
//! requests can only share a key through a 128-bit hash collision (`["ab","c"]` and
//! `["a","bc"]`, or a system block versus a message, encode differently).
//!
//! The encoders destructure every struct and enum variant, so adding a field to
//! [`KeyInput`], [`Message`] or [`Part`] without encoding it is a compile error.
//!
//! Roles are `user` and `assistant` only: system text has its own list, and tool results are
//! `tool_result` parts of a user turn (as in Anthropic's API; an OpenAI `tool` message maps
//! to that).

use serde::Deserialize;
use serde_json::{Map, Value};
use xxhash_rust::xxh3::Xxh3Default;

use crate::canon::RuleSet;
use crate::error::{CoreError, Result};

/// Label hashed first, so a future encoding change gives new keys instead of collisions.
pub const KEY_FORMAT: &[u8] = b"skinflint/key/v1";

/// Tag bytes of the encoding. Never reuse or renumber a tag; add new ones.
pub(crate) mod tag {
    pub const NAMESPACE: u8 = 0x01;
    pub const MODEL: u8 = 0x02;
    pub const PARAMS: u8 = 0x03;
    pub const TOOLS: u8 = 0x04;
    pub const TOOL: u8 = 0x05;
    pub const SYSTEM: u8 = 0x06;
    pub const SYSTEM_BLOCK: u8 = 0x07;
    pub const MESSAGES: u8 = 0x08;
    pub const ROLE: u8 = 0x09;
    pub const PARTS: u8 = 0x0a;
    pub const PART_TEXT: u8 = 0x10;
    pub const PART_IMAGE: u8 = 0x11;
    pub const PART_TOOL_USE: u8 = 0x12;
    pub const PART_TOOL_RESULT: u8 = 0x13;
    pub const MEDIA_TYPE: u8 = 0x20;
    pub const DATA: u8 = 0x21;
    pub const URL: u8 = 0x22;
    pub const ID: u8 = 0x23;
    pub const NAME: u8 = 0x24;
    pub const INPUT: u8 = 0x25;
    pub const TOOL_USE_ID: u8 = 0x26;
    pub const CONTENT_TEXT: u8 = 0x27;
    pub const CONTENT_JSON: u8 = 0x28;
    pub const IS_ERROR: u8 = 0x29;
    pub const TEXT: u8 = 0x2a;
    pub const MESSAGE: u8 = 0x2b;
    pub const PREFIX_MESSAGES: u8 = 0x2c;
}

/// Everything that decides a response, as documented in `_native.pyi`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyInput {
    /// Tenant namespace (always in the key: no answer crosses tenants). Must not be empty.
    pub namespace: String,
    /// The requested model. Must not be empty.
    pub model: String,
    /// Output-affecting parameters.
    #[serde(default)]
    pub params: Map<String, Value>,
    /// Tool definitions (JSON objects), order kept.
    #[serde(default)]
    pub tools: Vec<Value>,
    /// System text blocks.
    #[serde(default)]
    pub system: Vec<String>,
    /// The turns, order kept.
    #[serde(default)]
    pub messages: Vec<Message>,
}

/// One turn.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Part>,
}

/// Who speaks a turn. System text is not a role here (see [`KeyInput::system`]).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One content part of a turn.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Part {
    Text {
        text: String,
    },
    /// Exactly one of `data` (base64) and `url`.
    Image {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        data: Option<String>,
        #[serde(default)]
        url: Option<String>,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    /// `content` is a string (text rules) or any other JSON (canonical JSON).
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Value,
        #[serde(default)]
        is_error: bool,
    },
}

const PART_TYPES: &str = "text, image, tool_use, tool_result";

impl KeyInput {
    /// Parses and validates a request given as a JSON document.
    pub fn from_json(json: &[u8]) -> Result<Self> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let input: KeyInput =
            serde_path_to_error::deserialize(&mut de).map_err(|e| shape_error(&e))?;
        de.end().map_err(|e| {
            CoreError::KeyInput(format!(
                "request: trailing data after the JSON document: {e}"
            ))
        })?;
        input.validate()?;
        Ok(input)
    }

    /// Parses and validates a request given as a JSON value (the binding converts the Python
    /// dict into one).
    pub fn from_value(value: Value) -> Result<Self> {
        if !value.is_object() {
            return Err(CoreError::KeyInput(format!(
                "request: expected an object (dict), got {}",
                json_type_name(&value)
            )));
        }
        let input: KeyInput =
            serde_path_to_error::deserialize(value).map_err(|e| shape_error(&e))?;
        input.validate()?;
        Ok(input)
    }

    /// Checks what serde cannot express.
    pub fn validate(&self) -> Result<()> {
        if self.namespace.is_empty() {
            return Err(CoreError::KeyInput(
                "namespace: must not be empty; pass the tenant namespace, e.g. \"tenant:acme\""
                    .into(),
            ));
        }
        if self.model.is_empty() {
            return Err(CoreError::KeyInput(
                "model: must not be empty; pass the requested model name".into(),
            ));
        }
        for (i, tool) in self.tools.iter().enumerate() {
            if !tool.is_object() {
                return Err(CoreError::KeyInput(format!(
                    "tools[{i}]: expected a JSON object (a tool definition), got {}",
                    json_type_name(tool)
                )));
            }
        }
        for (m, message) in self.messages.iter().enumerate() {
            for (p, part) in message.content.iter().enumerate() {
                if let Part::Image { data, url, .. } = part {
                    if data.is_some() == url.is_some() {
                        return Err(CoreError::KeyInput(format!(
                            "messages[{m}].content[{p}]: an image part needs exactly one of \
                             \"data\" (base64) or \"url\""
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Turns a serde error into a message that names the path and the fix.
fn shape_error<E: std::fmt::Display>(err: &serde_path_to_error::Error<E>) -> CoreError {
    let path = err.path().to_string();
    let path = if path == "." {
        "request".to_owned()
    } else {
        path
    };
    let raw = err.inner().to_string();
    // serde_json appends " at line L column C"; keep it (useful for JSON input).
    let msg = raw.replace('`', "\"");
    // An unknown tag is reported at `...content[i].type`; name the part itself.
    let path = match path.strip_suffix(".type") {
        Some(part) if msg.starts_with("unknown variant ") => part.to_owned(),
        _ => path,
    };
    // An unknown field is reported at its own name; name the object that has it.
    let unknown_field = msg
        .strip_prefix("unknown field \"")
        .and_then(|rest| rest.split_once('"'))
        .map(|(name, _)| name);
    let path = match unknown_field {
        Some(name) if path == name => "request".to_owned(),
        Some(name) => match path.strip_suffix(name).and_then(|p| p.strip_suffix('.')) {
            Some(parent) => parent.to_owned(),
            None => path,
        },
        None => path,
    };
    let is_part = path.ends_with(']') && path.contains(".content[");
    let text = if let Some(rest) = msg.strip_prefix("unknown variant ") {
        let found = rest.split(',').next().unwrap_or(rest);
        if path.ends_with(".role") {
            let hint = if found.trim_matches('"') == "system" {
                "; system text goes in the top-level \"system\" list"
            } else {
                ""
            };
            format!("{path}: unknown role {found}; expected one of user, assistant{hint}")
        } else if is_part {
            format!("{path}: unknown part type {found}; expected one of {PART_TYPES}")
        } else {
            format!("{path}: {msg}")
        }
    } else if msg.starts_with("missing field \"type\"") && is_part {
        format!("{path}: missing \"type\"; expected one of {PART_TYPES}")
    } else if msg.starts_with("unknown field") && path == "request" {
        format!(
            "{path}: {msg}. Every output-affecting field must be part of the cache key: map it \
             onto one of the known fields or add it to skinflint's KeyInput"
        )
    } else {
        format!("{path}: {msg}")
    };
    CoreError::KeyInput(text)
}

/// Where encoded bytes go: a hasher in production, a `Vec` in tests.
pub(crate) trait Sink {
    fn write(&mut self, bytes: &[u8]);
}

impl Sink for Xxh3Default {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

impl Sink for Vec<u8> {
    fn write(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Streams the tagged, length-prefixed encoding of request pieces into a [`Sink`].
pub(crate) struct Encoder<'r, S: Sink> {
    pub(crate) sink: S,
    rules: &'r RuleSet,
    scratch: String,
    /// Whether the methods count characters (prefix fingerprints need the counts; the cache
    /// key does not, and they return 0 there).
    count_chars: bool,
}

impl<'r, S: Sink> Encoder<'r, S> {
    /// An encoder whose methods return canonical lengths in characters.
    pub(crate) fn new(sink: S, rules: &'r RuleSet) -> Self {
        Encoder {
            sink,
            rules,
            // Room for typical params / tool JSON without growing.
            scratch: String::with_capacity(256),
            count_chars: true,
        }
    }

    /// An encoder whose methods return 0 instead of counting characters.
    pub(crate) fn without_counts(sink: S, rules: &'r RuleSet) -> Self {
        Encoder {
            count_chars: false,
            ..Encoder::new(sink, rules)
        }
    }

    fn chars(&self, s: &str) -> usize {
        if self.count_chars {
            s.chars().count()
        } else {
            0
        }
    }

    fn raw(&mut self, tag: u8, bytes: &[u8]) {
        self.sink.write(&[tag]);
        self.sink.write(&(bytes.len() as u64).to_le_bytes());
        self.sink.write(bytes);
    }

    pub(crate) fn label(&mut self, bytes: &[u8]) {
        self.sink.write(bytes);
    }

    pub(crate) fn exact(&mut self, tag: u8, s: &str) {
        self.raw(tag, s.as_bytes());
    }

    pub(crate) fn count(&mut self, tag: u8, n: usize) {
        self.sink.write(&[tag]);
        self.sink.write(&(n as u64).to_le_bytes());
    }

    fn optional(&mut self, tag: u8, s: Option<&str>) {
        match s {
            None => self.sink.write(&[tag, 0]),
            Some(s) => {
                self.sink.write(&[tag, 1]);
                self.sink.write(&(s.len() as u64).to_le_bytes());
                self.sink.write(s.as_bytes());
            }
        }
    }

    /// Text after the rule set; returns its length in characters.
    fn text(&mut self, tag: u8, s: &str) -> usize {
        let canonical = self.rules.canonicalize_text(s);
        self.raw(tag, canonical.as_bytes());
        self.chars(&canonical)
    }

    /// Canonical JSON; returns its length in characters.
    pub(crate) fn json(&mut self, tag: u8, v: &Value) -> usize {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        self.rules.write_json(v, &mut scratch);
        self.raw(tag, scratch.as_bytes());
        let chars = self.chars(&scratch);
        self.scratch = scratch;
        chars
    }

    /// Canonical JSON of an object given as a map.
    fn json_object(&mut self, tag: u8, map: &Map<String, Value>) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        self.rules.write_json_object(map, &mut scratch);
        self.raw(tag, scratch.as_bytes());
        self.scratch = scratch;
    }

    /// One tool definition; returns its canonical length in characters.
    pub(crate) fn tool(&mut self, tool: &Value) -> usize {
        self.json(tag::TOOL, tool)
    }

    /// One system block; returns its canonical length in characters.
    pub(crate) fn system_block(&mut self, block: &str) -> usize {
        self.text(tag::SYSTEM_BLOCK, block)
    }

    /// One message; returns the canonical length of its content in characters.
    pub(crate) fn message(&mut self, message: &Message) -> usize {
        let Message { role, content } = message;
        self.exact(tag::ROLE, role.as_str());
        self.count(tag::PARTS, content.len());
        content.iter().map(|part| self.part(part)).sum()
    }

    fn part(&mut self, part: &Part) -> usize {
        match part {
            Part::Text { text } => {
                self.sink.write(&[tag::PART_TEXT]);
                self.text(tag::TEXT, text)
            }
            Part::Image {
                media_type,
                data,
                url,
            } => {
                self.sink.write(&[tag::PART_IMAGE]);
                self.optional(tag::MEDIA_TYPE, media_type.as_deref());
                self.optional(tag::DATA, data.as_deref());
                self.optional(tag::URL, url.as_deref());
                // Image size in tokens is unrelated to its base64 length: count nothing.
                0
            }
            Part::ToolUse { id, name, input } => {
                self.sink.write(&[tag::PART_TOOL_USE]);
                self.exact(tag::ID, id);
                self.exact(tag::NAME, name);
                self.chars(name) + self.json(tag::INPUT, input)
            }
            Part::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => {
                self.sink.write(&[tag::PART_TOOL_RESULT]);
                self.exact(tag::TOOL_USE_ID, tool_use_id);
                self.sink.write(&[tag::IS_ERROR, u8::from(*is_error)]);
                match content {
                    Value::String(s) => self.text(tag::CONTENT_TEXT, s),
                    other => self.json(tag::CONTENT_JSON, other),
                }
            }
        }
    }
}

/// Streams the full cache-key encoding of `input` into `enc`.
pub(crate) fn encode_key<S: Sink>(input: &KeyInput, enc: &mut Encoder<'_, S>) {
    // Destructured so that a new field is a compile error until it is encoded.
    let KeyInput {
        namespace,
        model,
        params,
        tools,
        system,
        messages,
    } = input;
    enc.label(KEY_FORMAT);
    enc.exact(tag::NAMESPACE, namespace);
    enc.exact(tag::MODEL, model);
    enc.json_object(tag::PARAMS, params);
    enc.count(tag::TOOLS, tools.len());
    for tool in tools {
        enc.tool(tool);
    }
    enc.count(tag::SYSTEM, system.len());
    for block in system {
        enc.system_block(block);
    }
    enc.count(tag::MESSAGES, messages.len());
    for message in messages {
        enc.message(message);
    }
}

/// A 128-bit cache key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey(pub u128);

impl CacheKey {
    /// 32 lowercase hex digits.
    pub fn hex(&self) -> String {
        format!("{:032x}", self.0)
    }

    /// 16 bytes, big-endian (what the response cache stores under).
    pub fn to_bytes(&self) -> [u8; 16] {
        self.0.to_be_bytes()
    }
}

/// The cache key of a validated request under `rules`.
pub fn cache_key(input: &KeyInput, rules: &RuleSet) -> CacheKey {
    let mut enc = Encoder::without_counts(Xxh3Default::new(), rules);
    encode_key(input, &mut enc);
    CacheKey(enc.sink.digest128())
}

/// The encoding itself (tests and debugging).
pub fn key_encoding(input: &KeyInput, rules: &RuleSet) -> Vec<u8> {
    let mut enc = Encoder::without_counts(Vec::new(), rules);
    encode_key(input, &mut enc);
    enc.sink
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use xxhash_rust::xxh3::xxh3_128;

    fn rules(name: &str) -> RuleSet {
        RuleSet::named(name).unwrap()
    }

    fn base() -> Value {
        json!({
            "namespace": "tenant:acme",
            "model": "anthropic/claude-haiku-4-5",
            "params": {"temperature": 0.0, "max_tokens": 100},
            "tools": [{"name": "search", "input_schema": {"type": "object"}}],
            "system": ["You are helpful."],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Hello  there"}]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "t1", "name": "search", "input": {"q": "x", "n": 1}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "found", "is_error": false},
                    {"type": "image", "media_type": "image/png", "data": "iVBORw0KGgo="}
                ]}
            ]
        })
    }

    fn key_of(v: &Value, r: &RuleSet) -> CacheKey {
        cache_key(&KeyInput::from_value(v.clone()).unwrap(), r)
    }

    fn err_of(v: Value) -> String {
        KeyInput::from_value(v).unwrap_err().to_string()
    }

    #[test]
    fn streaming_hash_matches_one_shot() {
        let r = rules("conservative");
        let input = KeyInput::from_value(base()).unwrap();
        let bytes = key_encoding(&input, &r);
        assert_eq!(cache_key(&input, &r).0, xxh3_128(&bytes));
        assert!(bytes.starts_with(KEY_FORMAT));
        let k = cache_key(&input, &r);
        assert_eq!(k.hex().len(), 32);
        assert_eq!(u128::from_be_bytes(k.to_bytes()), k.0);
    }

    #[test]
    fn json_and_value_inputs_agree() {
        let r = rules("conservative");
        let text = serde_json::to_vec(&base()).unwrap();
        let a = cache_key(&KeyInput::from_json(&text).unwrap(), &r);
        assert_eq!(a, key_of(&base(), &r));
    }

    #[test]
    fn whitespace_variants_share_a_key() {
        let r = rules("conservative");
        let mut v = base();
        v["messages"][0]["content"][0]["text"] = json!("  Hello \n there ");
        v["system"][0] = json!("You are\thelpful.");
        v["params"] = json!({"max_tokens": 100, "temperature": 0});
        v["tools"][0] = json!({"input_schema": {"type": "object"}, "name": "search"});
        assert_eq!(key_of(&v, &r), key_of(&base(), &r));
        // ... but not under "exact".
        let exact = rules("exact");
        assert_ne!(key_of(&v, &exact), key_of(&base(), &exact));
    }

    #[test]
    fn changes_that_matter_change_the_key() {
        let r = rules("conservative");
        let k0 = key_of(&base(), &r);
        type Mutation = Box<dyn Fn(&mut Value)>;
        let mutations: Vec<Mutation> = vec![
            Box::new(|v| v["namespace"] = json!("tenant:other")),
            Box::new(|v| v["model"] = json!("openai/gpt-4o")),
            Box::new(|v| v["params"]["temperature"] = json!(0.5)),
            Box::new(|v| v["params"]["top_p"] = json!(1)),
            Box::new(|v| v["tools"][0]["name"] = json!("lookup")),
            Box::new(|v| v["tools"] = json!([])),
            Box::new(|v| v["system"] = json!([])),
            Box::new(|v| v["messages"][0]["role"] = json!("assistant")),
            Box::new(|v| v["messages"][0]["content"][0]["text"] = json!("Hello there!")),
            Box::new(|v| v["messages"][1]["content"][0]["input"]["n"] = json!(2)),
            Box::new(|v| v["messages"][1]["content"][0]["id"] = json!("t2")),
            Box::new(|v| v["messages"][2]["content"][0]["is_error"] = json!(true)),
            Box::new(|v| v["messages"][2]["content"][0]["content"] = json!(["found"])),
            Box::new(|v| v["messages"][2]["content"][1]["data"] = json!("AAAA")),
            Box::new(|v| {
                v["messages"][2]["content"][1] =
                    json!({"type": "image", "media_type": "image/png", "url": "iVBORw0KGgo="})
            }),
            Box::new(|v| {
                v["messages"]
                    .as_array_mut()
                    .unwrap()
                    .pop()
                    .map(drop)
                    .unwrap()
            }),
        ];
        let mut seen = std::collections::HashSet::new();
        seen.insert(k0);
        for (i, m) in mutations.iter().enumerate() {
            let mut v = base();
            m(&mut v);
            let k = key_of(&v, &r);
            assert!(seen.insert(k), "mutation {i} collided");
        }
    }

    fn text_msg(role: &str, texts: &[&str]) -> Value {
        json!({"role": role, "content": texts.iter().map(|t| json!({"type": "text", "text": t})).collect::<Vec<_>>()})
    }

    fn req(system: &[&str], messages: Vec<Value>) -> Value {
        json!({"namespace": "n", "model": "m", "system": system, "messages": messages})
    }

    #[test]
    fn no_concatenation_ambiguity() {
        let r = rules("exact");
        let pairs = [
            (
                req(&[], vec![text_msg("user", &["ab", "c"])]),
                req(&[], vec![text_msg("user", &["a", "bc"])]),
            ),
            (
                req(
                    &[],
                    vec![text_msg("user", &["ab"]), text_msg("user", &["c"])],
                ),
                req(
                    &[],
                    vec![text_msg("user", &["a"]), text_msg("user", &["bc"])],
                ),
            ),
            (
                req(&[], vec![text_msg("user", &["a", "b"])]),
                req(
                    &[],
                    vec![text_msg("user", &["a"]), text_msg("user", &["b"])],
                ),
            ),
            (
                req(&["x"], vec![text_msg("user", &["y"])]),
                req(&[], vec![text_msg("user", &["x", "y"])]),
            ),
            (
                req(&["x"], vec![text_msg("user", &["y"])]),
                req(&[], vec![text_msg("user", &["xy"])]),
            ),
            (req(&["x", "y"], vec![]), req(&["xy"], vec![])),
            (
                json!({"namespace": "ab", "model": "c"}),
                json!({"namespace": "a", "model": "bc"}),
            ),
        ];
        for (i, (a, b)) in pairs.iter().enumerate() {
            assert_ne!(key_of(a, &r), key_of(b, &r), "pair {i}");
        }
    }

    #[test]
    fn volatile_rules_apply_to_text_and_json_strings() {
        let r = rules("volatile");
        let a = req(
            &["today is 2024-05-01"],
            vec![text_msg("user", &["at 2024-05-01T10:00:00Z"])],
        );
        let b = req(
            &["today is 2025-01-31"],
            vec![text_msg("user", &["at 2025-01-31T23:59:59Z"])],
        );
        assert_eq!(key_of(&a, &r), key_of(&b, &r));
        assert_ne!(
            key_of(&a, &rules("conservative")),
            key_of(&b, &rules("conservative"))
        );
    }

    #[test]
    fn shape_errors_name_the_path_and_fix() {
        let mut v = base();
        v["messages"][2]["content"][0]["type"] = json!("imgae");
        let e = err_of(v);
        assert_eq!(
            e,
            "messages[2].content[0]: unknown part type \"imgae\"; expected one of text, image, tool_use, tool_result"
        );

        let mut v = base();
        v["messages"][0]["role"] = json!("system");
        let e = err_of(v);
        assert!(
            e.starts_with("messages[0].role: unknown role \"system\""),
            "{e}"
        );
        assert!(e.contains("top-level \"system\""), "{e}");

        let mut v = base();
        v["seed"] = json!(1);
        let e = err_of(v);
        assert!(e.starts_with("request: unknown field \"seed\""), "{e}");
        assert!(e.contains("KeyInput"), "{e}");

        let mut v = base();
        v.as_object_mut().unwrap().remove("model");
        assert!(err_of(v).contains("missing field \"model\""));

        let mut v = base();
        v["namespace"] = json!("");
        assert!(err_of(v).starts_with("namespace: must not be empty"));

        let mut v = base();
        v["model"] = json!("");
        assert!(err_of(v).starts_with("model: must not be empty"));

        let mut v = base();
        v["messages"][0]["content"][0]["extra"] = json!(1);
        let e = err_of(v);
        assert!(e.starts_with("messages[0].content[0]"), "{e}");
        assert!(e.contains("unknown field \"extra\""), "{e}");

        let mut v = base();
        v["messages"][0]["content"][0] = json!({"text": "no type"});
        let e = err_of(v);
        assert!(
            e.starts_with("messages[0].content[0]: missing \"type\""),
            "{e}"
        );

        let mut v = base();
        v["messages"][2]["content"][1] = json!({"type": "image", "media_type": "image/png"});
        assert!(err_of(v).contains("exactly one of"));

        let mut v = base();
        v["tools"] = json!(["search"]);
        assert!(err_of(v).starts_with("tools[0]: expected a JSON object"));

        let mut v = base();
        v["messages"][0]["content"] = json!("plain string");
        let e = err_of(v);
        assert!(e.starts_with("messages[0].content: "), "{e}");

        assert!(KeyInput::from_value(json!([1]))
            .unwrap_err()
            .to_string()
            .starts_with("request: expected an object"));
        let e = KeyInput::from_json(b"{\"namespace\": 1}")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("namespace: invalid type"), "{e}");
        let e = KeyInput::from_json(b"{} x").unwrap_err().to_string();
        assert!(e.contains("missing field") || e.contains("trailing"), "{e}");
    }

    #[test]
    fn optional_lists_default_to_empty() {
        let r = rules("conservative");
        let a = json!({"namespace": "n", "model": "m"});
        let b = json!({"namespace": "n", "model": "m", "params": {}, "tools": [], "system": [], "messages": []});
        assert_eq!(key_of(&a, &r), key_of(&b, &r));
    }
}
