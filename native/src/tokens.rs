//! Token counting with tiktoken-rs (vocabularies are compiled in; loaded lazily, once).
//!
//! Text is always encoded as *ordinary* text: a special-token string such as
//! `<|endoftext|>` in user content counts as the ordinary tokens it is made of, never as a
//! special token, so content cannot change its own count by injecting specials.

use tiktoken_rs::{cl100k_base_singleton, o200k_base_singleton, CoreBPE};

/// How a count was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// OpenAI's `o200k_base` (GPT-4o, 4.1, 4.5, 5, o-series, gpt-oss; fallback for unknown).
    O200kBase,
    /// OpenAI's `cl100k_base` (GPT-4, GPT-3.5, text-embedding-3, ada-002).
    Cl100kBase,
    /// See [`anthropic_estimate`].
    AnthropicEstimate,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::O200kBase => "o200k_base",
            Method::Cl100kBase => "cl100k_base",
            Method::AnthropicEstimate => "anthropic-estimate",
        }
    }
}

/// A token count and how much to trust it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenCount {
    pub count: u64,
    /// True when `method` is the model's own tokenizer.
    pub exact: bool,
    pub method: Method,
}

/// Tokens OpenAI's chat format adds per message (cookbook rule for current models).
pub const TOKENS_PER_MESSAGE: u64 = 3;
/// Tokens that prime the assistant's reply (`<|start|>assistant<|message|>`).
pub const TOKENS_REPLY_PRIMING: u64 = 3;

const O200K_PREFIXES: [&str; 5] = ["gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5"];
const O_SERIES: [&str; 3] = ["o1", "o3", "o4"];
const CL100K_PREFIXES: [&str; 5] = [
    "gpt-4",
    "gpt-3.5",
    "gpt-35",
    "text-embedding-3",
    "text-embedding-ada-002",
];

/// The tokenizer for `model` and whether counts with it are exact.
///
/// A `provider/` prefix is ignored (`openai/gpt-4o`, `anthropic/claude-haiku-4-5`), as is a
/// fine-tune prefix `ft:`. Claude models (and anything under `anthropic/`) get
/// [`Method::AnthropicEstimate`]; unknown models fall back to `o200k_base`, not exact.
pub fn encoding_for_model(model: &str) -> (Method, bool) {
    let lower = model.trim().to_ascii_lowercase();
    let provider = lower.split_once('/').map(|(p, _)| p).unwrap_or("");
    let name = lower.rsplit('/').next().unwrap_or(&lower);
    let name = name.strip_prefix("ft:").unwrap_or(name);
    if provider == "anthropic" || name.contains("claude") {
        return (Method::AnthropicEstimate, false);
    }
    if O200K_PREFIXES.iter().any(|p| name.starts_with(p)) || name.starts_with("gpt-oss") {
        return (Method::O200kBase, true);
    }
    let o_series = O_SERIES.iter().any(|p| {
        name.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['-', '.', ':', '@', '_']))
    });
    if o_series {
        return (Method::O200kBase, true);
    }
    if CL100K_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return (Method::Cl100kBase, true);
    }
    (Method::O200kBase, false)
}

/// Anthropic publishes no tokenizer for its current models. We count `cl100k_base` tokens
/// and multiply by 13/10, rounding up (`(n * 13 + 9) / 10`).
///
/// This is a deliberate over-estimate: these counts feed worst-case budget reservations,
/// where counting too few could let a request overspend, while counting a few too many only
/// reserves a little more than needed until the provider reports the real usage.
pub fn anthropic_estimate(cl100k_tokens: u64) -> u64 {
    cl100k_tokens.saturating_mul(13).saturating_add(9) / 10
}

fn bpe(method: Method) -> &'static CoreBPE {
    match method {
        Method::O200kBase => o200k_base_singleton(),
        Method::Cl100kBase | Method::AnthropicEstimate => cl100k_base_singleton(),
    }
}

fn raw_count(bpe: &CoreBPE, text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    bpe.encode_ordinary(text).len() as u64
}

fn finish(method: Method, exact: bool, raw: u64) -> TokenCount {
    let count = match method {
        Method::AnthropicEstimate => anthropic_estimate(raw),
        _ => raw,
    };
    TokenCount {
        count,
        exact,
        method,
    }
}

/// Tokens of `text` for `model`: exact for OpenAI models, an over-estimate for Anthropic.
pub fn count_tokens(model: &str, text: &str) -> TokenCount {
    let (method, exact) = encoding_for_model(model);
    finish(method, exact, raw_count(bpe(method), text))
}

/// Prompt tokens of a chat request: per message [`TOKENS_PER_MESSAGE`] + tokens of the role
/// and the content, plus [`TOKENS_REPLY_PRIMING`] (OpenAI's documented rule). For Anthropic
/// the same total, counted with `cl100k_base`, is scaled by [`anthropic_estimate`].
pub fn count_chat_tokens<S: AsRef<str>>(model: &str, messages: &[(S, S)]) -> TokenCount {
    let (method, exact) = encoding_for_model(model);
    let bpe = bpe(method);
    let mut total = TOKENS_REPLY_PRIMING;
    for (role, content) in messages {
        total +=
            TOKENS_PER_MESSAGE + raw_count(bpe, role.as_ref()) + raw_count(bpe, content.as_ref());
    }
    finish(method, exact, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_to_encoding() {
        let cases = [
            ("gpt-4o", Method::O200kBase, true),
            ("openai/gpt-4o-mini", Method::O200kBase, true),
            ("chatgpt-4o-latest", Method::O200kBase, true),
            ("gpt-4.1-nano", Method::O200kBase, true),
            ("gpt-4.5-preview", Method::O200kBase, true),
            ("gpt-5", Method::O200kBase, true),
            ("gpt-5-mini", Method::O200kBase, true),
            ("o1", Method::O200kBase, true),
            ("o3-mini", Method::O200kBase, true),
            ("o4-mini", Method::O200kBase, true),
            ("gpt-oss-120b", Method::O200kBase, true),
            ("ft:gpt-4o-mini:org::id", Method::O200kBase, true),
            ("gpt-4", Method::Cl100kBase, true),
            ("gpt-4-turbo", Method::Cl100kBase, true),
            ("gpt-3.5-turbo", Method::Cl100kBase, true),
            ("azure/gpt-35-turbo", Method::Cl100kBase, true),
            ("text-embedding-3-small", Method::Cl100kBase, true),
            ("text-embedding-ada-002", Method::Cl100kBase, true),
            ("claude-haiku-4-5", Method::AnthropicEstimate, false),
            (
                "anthropic/claude-sonnet-4-5",
                Method::AnthropicEstimate,
                false,
            ),
            (
                "bedrock/anthropic.claude-3-haiku",
                Method::AnthropicEstimate,
                false,
            ),
            (
                "anthropic/some-future-model",
                Method::AnthropicEstimate,
                false,
            ),
            ("llama-3.1-8b", Method::O200kBase, false),
            ("vllm/mistral-7b", Method::O200kBase, false),
            ("o10-pro", Method::O200kBase, false),
            ("", Method::O200kBase, false),
        ];
        for (model, method, exact) in cases {
            assert_eq!(encoding_for_model(model), (method, exact), "{model}");
        }
        assert_eq!(Method::AnthropicEstimate.as_str(), "anthropic-estimate");
    }

    #[test]
    fn known_counts() {
        for model in ["gpt-4o", "gpt-4"] {
            assert_eq!(count_tokens(model, "hello world").count, 2, "{model}");
            assert_eq!(count_tokens(model, "").count, 0);
        }
        assert_eq!(
            count_tokens("gpt-4", "hello world").method,
            Method::Cl100kBase
        );
        // 2 cl100k tokens * 1.3 = 2.6 -> 3.
        let c = count_tokens("claude-haiku-4-5", "hello world");
        assert_eq!(
            (c.count, c.exact, c.method),
            (3, false, Method::AnthropicEstimate)
        );
        let unknown = count_tokens("mystery-model", "hello world");
        assert_eq!((unknown.count, unknown.exact), (2, false));
    }

    #[test]
    fn special_tokens_are_ordinary_text() {
        let t = count_tokens("gpt-4o", "<|endoftext|>");
        assert!(
            t.count > 1,
            "special token text must not count as one special token"
        );
    }

    #[test]
    fn estimate_rounds_up() {
        assert_eq!(anthropic_estimate(0), 0);
        assert_eq!(anthropic_estimate(1), 2);
        assert_eq!(anthropic_estimate(10), 13);
        assert_eq!(anthropic_estimate(11), 15);
        assert_eq!(anthropic_estimate(u64::MAX), u64::MAX / 10);
    }

    #[test]
    fn chat_framing() {
        // "user" and "hello world" are 1 and 2 tokens: 3 + 1 + 2 + 3 priming = 9.
        let c = count_chat_tokens("gpt-4o", &[("user", "hello world")]);
        assert_eq!(c.count, 9);
        let empty: [(&str, &str); 0] = [];
        assert_eq!(count_chat_tokens("gpt-4o", &empty).count, 3);
        let two = count_chat_tokens(
            "gpt-4",
            &[("system", "hello world"), ("user", "hello world")],
        );
        assert_eq!(two.count, 3 + (3 + 1 + 2) * 2);
        let est = count_chat_tokens("claude-haiku-4-5", &[("user", "hello world")]);
        assert_eq!(est.count, anthropic_estimate(9));
    }
}
