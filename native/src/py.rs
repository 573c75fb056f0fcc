//! The Python binding (`skinflint._native`): the only file that knows about PyO3.
//!
//! Every exported function and method:
//!
//! * extracts its Python arguments into owned or immutable Rust data while attached;
//! * runs canonicalization, hashing, token counting and every LMDB operation detached from
//!   the interpreter (`Python::detach`), so other Python threads keep running. The one
//!   exception: `cache_key` and `prefix_fingerprints` of a request carrying at most
//!   [`DETACH_MIN_BYTES`] of text stay attached, because keying such a request takes a few
//!   microseconds, less than handing the GIL over and getting it back can cost;
//! * maps [`CoreError`] to this module's exception classes in one place ([`to_py_err`]);
//! * runs inside `catch_unwind`: a Rust panic becomes `NativePanic`, a subclass of
//!   `NativeError` and `RuntimeError` (PyO3's own `PanicException` derives from
//!   `BaseException`, which `except Exception` would miss).
//!
//! The exception classes need two bases each (e.g. `KeyInputError(NativeError, ValueError)`),
//! which `create_exception!` cannot express, so they are created at first use by calling
//! Python's `type(name, bases, namespace)` and kept in a `PyOnceLock`.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use pyo3::exceptions::{PyException, PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyMapping, PyString, PyTuple, PyType,
};
use serde_json::{Map, Number, Value};

use crate::appender::{self, RowAppender};
use crate::budget::{self, BudgetLedger};
use crate::cache::{CacheStats, ResponseCache};
use crate::canon::{RuleSet, RuleSetOptions, BUILTIN_NAMES};
use crate::embed::{self, Embedder};
use crate::error::CoreError;
use crate::key::{self, KeyInput, Message, Part, Role};
use crate::prefix::{self, PrefixFingerprint};
use crate::tokens::{self, TokenCount};
use crate::vindex::VectorIndex;

const MODULE: &str = "skinflint._native";

/// Nesting deeper than this in a request is rejected (also stops cyclic containers).
const MAX_DEPTH: usize = 100;

// ---------------------------------------------------------------------------------------
// Exceptions
// ---------------------------------------------------------------------------------------

struct ExceptionTypes {
    native: Py<PyType>,
    key_input: Py<PyType>,
    rule_set: Py<PyType>,
    cache: Py<PyType>,
    budget: Py<PyType>,
    tokenizer: Py<PyType>,
    panic: Py<PyType>,
    embedding: Py<PyType>,
    ledger: Py<PyType>,
}

static EXCEPTIONS: PyOnceLock<ExceptionTypes> = PyOnceLock::new();

fn new_exception(
    py: Python<'_>,
    name: &str,
    bases: Vec<Bound<'_, PyType>>,
    doc: &str,
) -> PyResult<Py<PyType>> {
    let namespace = PyDict::new(py);
    namespace.set_item("__module__", MODULE)?;
    namespace.set_item("__doc__", doc)?;
    let bases = PyTuple::new(py, bases)?;
    let class = py.get_type::<PyType>().call1((name, bases, namespace))?;
    Ok(class.cast_into::<PyType>()?.unbind())
}

fn exception_types(py: Python<'_>) -> PyResult<&'static ExceptionTypes> {
    EXCEPTIONS.get_or_try_init(py, || {
        let native = new_exception(
            py,
            "NativeError",
            vec![py.get_type::<PyException>()],
            "Base class of every error raised by the Rust core.",
        )?;
        let sub = |name: &str, base: Bound<'_, PyType>, doc: &str| {
            new_exception(py, name, vec![native.bind(py).clone(), base], doc)
        };
        Ok(ExceptionTypes {
            key_input: sub(
                "KeyInputError",
                py.get_type::<PyValueError>(),
                "The request dict does not have the documented shape (names the path and the fix).",
            )?,
            rule_set: sub(
                "RuleSetError",
                py.get_type::<PyValueError>(),
                "A rule set is invalid (unknown name, bad regex: names the pattern and the reason).",
            )?,
            cache: sub(
                "CacheError",
                py.get_type::<PyOSError>(),
                "LMDB could not be opened or written (names the path and the LMDB error).",
            )?,
            budget: sub(
                "BudgetLedgerError",
                py.get_type::<PyOSError>(),
                "The budget ledger's LMDB could not be opened or written, or holds a value that \
                 does not decode (names the path, the key and the LMDB error).",
            )?,
            tokenizer: sub(
                "TokenizerError",
                py.get_type::<PyValueError>(),
                "Token counting failed (for example an unknown encoding name).",
            )?,
            embedding: sub(
                "EmbeddingError",
                py.get_type::<PyOSError>(),
                "The embedding model could not be loaded or run (names the directory and the fix).",
            )?,
            ledger: sub(
                "LedgerError",
                py.get_type::<PyOSError>(),
                "The spend ledger's SQLite file could not be opened for writing (names the path \
                 and the SQLite error).",
            )?,
            panic: sub(
                "NativePanic",
                py.get_type::<PyRuntimeError>(),
                "A Rust panic caught at the boundary; the process keeps running.",
            )?,
            native,
        })
    })
}

fn raise(py: Python<'_>, pick: impl FnOnce(&ExceptionTypes) -> &Py<PyType>, msg: String) -> PyErr {
    match exception_types(py) {
        Ok(types) => PyErr::from_type(pick(types).bind(py).clone(), msg),
        Err(err) => err,
    }
}

/// The one place core errors become Python exceptions.
fn to_py_err(py: Python<'_>, err: CoreError) -> PyErr {
    let msg = err.to_string();
    match err {
        CoreError::KeyInput(_) => raise(py, |t| &t.key_input, msg),
        CoreError::RuleSet(_) => raise(py, |t| &t.rule_set, msg),
        CoreError::Cache { .. } => raise(py, |t| &t.cache, msg),
        CoreError::Budget { .. } => raise(py, |t| &t.budget, msg),
        CoreError::Tokenizer(_) => raise(py, |t| &t.tokenizer, msg),
        CoreError::Embedding(_) => raise(py, |t| &t.embedding, msg),
        CoreError::Ledger { .. } => raise(py, |t| &t.ledger, msg),
        CoreError::InvalidArgument(_) => PyValueError::new_err(msg),
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "panic with a non-string payload"
    }
}

/// Runs an exported body, turning a Rust panic into `NativePanic`.
fn guard<T>(py: Python<'_>, body: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => result,
        Err(payload) => Err(raise(
            py,
            |t| &t.panic,
            format!(
                "Rust panic in {MODULE}: {}. This is a bug in skinflint; the process keeps \
                 running, but please report it",
                panic_message(payload.as_ref())
            ),
        )),
    }
}

// ---------------------------------------------------------------------------------------
// Python request -> JSON value
// ---------------------------------------------------------------------------------------

/// Longest path shown in an error message (deep paths keep their end).
const MAX_SHOWN_PATH: usize = 120;

fn shown(path: &str) -> String {
    if path.is_empty() {
        return "request".to_owned();
    }
    if path.len() <= MAX_SHOWN_PATH {
        return path.to_owned();
    }
    let mut start = path.len() - MAX_SHOWN_PATH;
    while !path.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &path[start..])
}

/// Python's `repr()` of a string.
fn py_repr(py: Python<'_>, s: &str) -> String {
    PyString::new(py, s)
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| format!("{s:?}"))
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .qualname()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".to_owned())
}

/// Converts a request made of dicts, lists, tuples, str, int, float, bool and None into a
/// JSON value. Errors name the path of the offending value.
fn to_json(obj: &Bound<'_, PyAny>, path: &mut String, depth: usize) -> Result<Value, CoreError> {
    let bad = |path: &str, what: String| CoreError::KeyInput(format!("{}: {what}", shown(path)));
    if depth > MAX_DEPTH {
        return Err(bad(
            path,
            format!("nested deeper than {MAX_DEPTH} levels (is a container inside itself?)"),
        ));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        let s = s.to_str().map_err(|_| {
            bad(
                path,
                "string is not valid Unicode (lone surrogate); encode or replace it".into(),
            )
        })?;
        return Ok(Value::String(s.to_owned()));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        let mut map = Map::with_capacity(dict.len());
        for (k, v) in dict.iter() {
            insert_item(&mut map, &k, &v, path, depth)?;
        }
        return Ok(Value::Object(map));
    }
    if let Ok(list) = obj.cast::<PyList>() {
        return seq_to_json(list.iter(), path, depth);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::from(i));
        }
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(Value::from(u));
        }
        return Err(bad(
            path,
            "integer does not fit in 64 bits; pass it as a string".into(),
        ));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let v = f.value();
        return Number::from_f64(v).map(Value::Number).ok_or_else(|| {
            bad(
                path,
                format!("{v} is not a finite number; NaN and infinities have no JSON form"),
            )
        });
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        return seq_to_json(tuple.iter(), path, depth);
    }
    if let Ok(mapping) = obj.cast::<PyMapping>() {
        let items = mapping
            .items()
            .map_err(|e| bad(path, format!("cannot read the mapping's items: {e}")))?;
        let mut map = Map::new();
        for item in items.iter() {
            let (k, v) = item
                .extract::<(Bound<'_, PyAny>, Bound<'_, PyAny>)>()
                .map_err(|e| bad(path, format!("bad mapping item: {e}")))?;
            insert_item(&mut map, &k, &v, path, depth)?;
        }
        return Ok(Value::Object(map));
    }
    Err(bad(
        path,
        format!(
            "unsupported type {}; expected str, int, float, bool, None, list, tuple or dict",
            type_name(obj)
        ),
    ))
}

fn insert_item(
    map: &mut Map<String, Value>,
    k: &Bound<'_, PyAny>,
    v: &Bound<'_, PyAny>,
    path: &mut String,
    depth: usize,
) -> Result<(), CoreError> {
    let key = k
        .cast::<PyString>()
        .ok()
        .and_then(|s| s.to_str().ok())
        .ok_or_else(|| {
            CoreError::KeyInput(format!(
                "{}: key {} of type {} is not a string; JSON object keys must be str",
                shown(path),
                k.repr().map(|r| r.to_string()).unwrap_or_default(),
                type_name(k)
            ))
        })?;
    let len = path.len();
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
    let value = to_json(v, path, depth + 1)?;
    path.truncate(len);
    map.insert(key.to_owned(), value);
    Ok(())
}

fn seq_to_json<'py>(
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    path: &mut String,
    depth: usize,
) -> Result<Value, CoreError> {
    let mut out = Vec::new();
    for (i, item) in items.enumerate() {
        let len = path.len();
        path.push_str(&format!("[{i}]"));
        out.push(to_json(&item, path, depth + 1)?);
        path.truncate(len);
    }
    Ok(Value::Array(out))
}

// ---------------------------------------------------------------------------------------
// Python request -> KeyInput, fast path
// ---------------------------------------------------------------------------------------
//
// `cache_key` and `prefix_fingerprints` first try to build the `KeyInput` straight from the
// Python objects: plain dicts, lists / tuples, str, bool and None in the documented shape,
// with JSON-valued fields (params, tools, tool inputs, structured tool results) converted by
// `to_json` exactly as the general path does. Anything else (a missing or unknown field, a
// wrong type, a non-dict mapping, a value `to_json` rejects, a request `validate` rejects)
// makes the fast path give up, and the general path (`to_json` of the whole request, then
// `KeyInput::from_value`) accepts or rejects the request with its usual error naming the
// path. The fast path never produces an error itself, and it only accepts requests that the
// general path accepts, with the same `KeyInput`, so both paths give the same keys.

/// Requests carrying at most this many bytes of text are keyed without detaching from the
/// interpreter. Keying 8 KB takes a few microseconds, while releasing and re-taking the GIL
/// costs ~0.1-1 µs when no other thread wants it, and when others do, re-taking it can wait
/// for their switch interval (milliseconds): holding it briefly is cheaper for everyone.
/// Larger requests detach so other Python threads run meanwhile. (The estimate counts the
/// bytes of every string in the request plus a little per JSON value.)
const DETACH_MIN_BYTES: usize = 8 * 1024;

/// A request taken by the fast path, with the bytes of text it carries (a cost estimate).
struct FastRequest {
    input: KeyInput,
    text_bytes: usize,
}

impl FastRequest {
    /// Runs `work` on the input, detached from the interpreter only for large requests.
    fn run<T: Send>(&self, py: Python<'_>, work: impl FnOnce(&KeyInput) -> T + Send) -> T {
        if self.text_bytes > DETACH_MIN_BYTES {
            py.detach(|| work(&self.input))
        } else {
            work(&self.input)
        }
    }
}

fn fast_str<'a>(obj: &'a Bound<'_, PyAny>) -> Option<&'a str> {
    obj.cast::<PyString>().ok()?.to_str().ok()
}

fn fast_string(obj: &Bound<'_, PyAny>, text_bytes: &mut usize) -> Option<String> {
    let s = fast_str(obj)?;
    *text_bytes += s.len();
    Some(s.to_owned())
}

/// `None` -> `Some(None)`, a str -> `Some(Some(..))`, anything else -> `None`.
fn fast_opt_string(obj: &Bound<'_, PyAny>, text_bytes: &mut usize) -> Option<Option<String>> {
    if obj.is_none() {
        Some(None)
    } else {
        fast_string(obj, text_bytes).map(Some)
    }
}

/// `to_json` at `depth` (the depth the general path converts this value at).
fn fast_json(obj: &Bound<'_, PyAny>, depth: usize, text_bytes: &mut usize) -> Option<Value> {
    let value = to_json(obj, &mut String::new(), depth).ok()?;
    *text_bytes += json_weight(&value);
    Some(value)
}

/// Rough size of a JSON value in bytes (the cost estimate of canonicalizing it).
fn json_weight(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len() + 2,
        Value::Array(items) => items.iter().map(json_weight).sum::<usize>() + 2,
        Value::Object(map) => map.iter().map(|(k, v)| k.len() + 3 + json_weight(v)).sum(),
        _ => 8,
    }
}

/// The items of a list or tuple (what `to_json` turns into a JSON array), each through `f`.
fn fast_seq<T>(
    obj: &Bound<'_, PyAny>,
    mut f: impl FnMut(&Bound<'_, PyAny>) -> Option<T>,
) -> Option<Vec<T>> {
    if let Ok(list) = obj.cast::<PyList>() {
        let mut out = Vec::with_capacity(list.len());
        for item in list.iter() {
            out.push(f(&item)?);
        }
        Some(out)
    } else if let Ok(tuple) = obj.cast::<PyTuple>() {
        let mut out = Vec::with_capacity(tuple.len());
        for item in tuple.iter() {
            out.push(f(&item)?);
        }
        Some(out)
    } else {
        None
    }
}

/// The fast path (see above): `None` means "take the general path".
fn fast_request(request: &Bound<'_, PyAny>) -> Option<FastRequest> {
    let dict = request.cast::<PyDict>().ok()?;
    let mut n = 0;
    let (mut namespace, mut model) = (None, None);
    let mut params = Map::new();
    let mut tools = Vec::new();
    let mut system = Vec::new();
    let mut messages = Vec::new();
    // Depths as in the general path: the request is at 0, its values at 1.
    for (k, v) in dict.iter() {
        match fast_str(&k)? {
            "namespace" => namespace = Some(fast_string(&v, &mut n)?),
            "model" => model = Some(fast_string(&v, &mut n)?),
            "params" => match fast_json(&v, 1, &mut n)? {
                Value::Object(map) => params = map,
                _ => return None,
            },
            "tools" => match fast_json(&v, 1, &mut n)? {
                Value::Array(items) => tools = items,
                _ => return None,
            },
            "system" => system = fast_seq(&v, |block| fast_string(block, &mut n))?,
            "messages" => messages = fast_seq(&v, |m| fast_message(m, &mut n))?,
            _ => return None,
        }
    }
    let input = KeyInput {
        namespace: namespace?,
        model: model?,
        params,
        tools,
        system,
        messages,
    };
    input.validate().ok()?;
    Some(FastRequest {
        input,
        text_bytes: n,
    })
}

/// One message (a dict at depth 2).
fn fast_message(obj: &Bound<'_, PyAny>, n: &mut usize) -> Option<Message> {
    let dict = obj.cast::<PyDict>().ok()?;
    let (mut role, mut content) = (None, None);
    for (k, v) in dict.iter() {
        match fast_str(&k)? {
            "role" => {
                role = Some(match fast_str(&v)? {
                    "user" => Role::User,
                    "assistant" => Role::Assistant,
                    _ => return None,
                })
            }
            "content" => content = Some(fast_seq(&v, |part| fast_part(part, n))?),
            _ => return None,
        }
    }
    Some(Message {
        role: role?,
        content: content?,
    })
}

/// One content part (a dict at depth 4; its values at 5).
fn fast_part(obj: &Bound<'_, PyAny>, n: &mut usize) -> Option<Part> {
    let dict = obj.cast::<PyDict>().ok()?;
    let mut kind = None;
    let mut text = None;
    let (mut media_type, mut data, mut url) = (None, None, None);
    let (mut id, mut name, mut input) = (None, None, None);
    let (mut tool_use_id, mut content, mut is_error) = (None, None, None);
    for (k, v) in dict.iter() {
        match fast_str(&k)? {
            "type" => {
                kind = Some(match fast_str(&v)? {
                    "text" => PartKind::Text,
                    "image" => PartKind::Image,
                    "tool_use" => PartKind::ToolUse,
                    "tool_result" => PartKind::ToolResult,
                    _ => return None,
                })
            }
            "text" => text = Some(fast_string(&v, n)?),
            "media_type" => media_type = Some(fast_opt_string(&v, n)?),
            "data" => data = Some(fast_opt_string(&v, n)?),
            "url" => url = Some(fast_opt_string(&v, n)?),
            "id" => id = Some(fast_string(&v, n)?),
            "name" => name = Some(fast_string(&v, n)?),
            "input" => input = Some(fast_json(&v, 5, n)?),
            "tool_use_id" => tool_use_id = Some(fast_string(&v, n)?),
            "content" => content = Some(fast_json(&v, 5, n)?),
            "is_error" => is_error = Some(v.cast::<PyBool>().ok()?.is_true()),
            _ => return None,
        }
    }
    // Fields of the other variants are unknown fields of this one.
    let text_fields = text.is_some();
    let image_fields = media_type.is_some() || data.is_some() || url.is_some();
    let tool_use_fields = id.is_some() || name.is_some() || input.is_some();
    let tool_result_fields = tool_use_id.is_some() || content.is_some() || is_error.is_some();
    let only = |own: bool| -> Option<()> {
        let all = [
            text_fields,
            image_fields,
            tool_use_fields,
            tool_result_fields,
        ];
        (all.iter().filter(|&&f| f).count() <= usize::from(own)).then_some(())
    };
    Some(match kind? {
        PartKind::Text => {
            only(text_fields)?;
            Part::Text { text: text? }
        }
        PartKind::Image => {
            only(image_fields)?;
            Part::Image {
                media_type: media_type.flatten(),
                data: data.flatten(),
                url: url.flatten(),
            }
        }
        PartKind::ToolUse => {
            only(tool_use_fields)?;
            Part::ToolUse {
                id: id?,
                name: name?,
                input: input?,
            }
        }
        PartKind::ToolResult => {
            only(tool_result_fields)?;
            Part::ToolResult {
                tool_use_id: tool_use_id?,
                content: content.unwrap_or(Value::Null),
                is_error: is_error.unwrap_or(false),
            }
        }
    })
}

#[derive(Clone, Copy)]
enum PartKind {
    Text,
    Image,
    ToolUse,
    ToolResult,
}

fn request_value(py: Python<'_>, request: &Bound<'_, PyAny>) -> PyResult<Value> {
    if !(request.is_instance_of::<PyDict>() || request.cast::<PyMapping>().is_ok()) {
        return Err(to_py_err(
            py,
            CoreError::KeyInput(format!(
                "request: expected a dict (see the request shape in skinflint._native), got {}",
                type_name(request)
            )),
        ));
    }
    to_json(request, &mut String::new(), 0).map_err(|e| to_py_err(py, e))
}

// ---------------------------------------------------------------------------------------
// RuleSet, CacheKey, fingerprints
// ---------------------------------------------------------------------------------------

/// A named, immutable canonicalization rule set.
#[pyclass(name = "RuleSet", module = "skinflint._native", frozen)]
struct PyRuleSet {
    inner: RuleSet,
}

#[pymethods]
impl PyRuleSet {
    #[new]
    #[pyo3(signature = (
        *,
        name = "custom".to_owned(),
        nfc = true,
        collapse_whitespace = true,
        trim = true,
        sort_json_keys = true,
        case_fold = false,
        strip_timestamps = false,
        strip_dates = false,
        strip_uuids = false,
        strip_patterns = Vec::new(),
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        name: String,
        nfc: bool,
        collapse_whitespace: bool,
        trim: bool,
        sort_json_keys: bool,
        case_fold: bool,
        strip_timestamps: bool,
        strip_dates: bool,
        strip_uuids: bool,
        strip_patterns: Vec<String>,
    ) -> PyResult<Self> {
        guard(py, || {
            let options = RuleSetOptions {
                name,
                nfc,
                collapse_whitespace,
                trim,
                sort_json_keys,
                case_fold,
                strip_timestamps,
                strip_dates,
                strip_uuids,
                strip_patterns,
            };
            let inner = py
                .detach(|| RuleSet::new(options))
                .map_err(|e| to_py_err(py, e))?;
            Ok(PyRuleSet { inner })
        })
    }

    #[staticmethod]
    fn named(py: Python<'_>, name: &str) -> PyResult<Self> {
        guard(py, || {
            let inner = RuleSet::named(name).map_err(|e| to_py_err(py, e))?;
            Ok(PyRuleSet { inner })
        })
    }

    #[staticmethod]
    fn builtin_names() -> Vec<&'static str> {
        BUILTIN_NAMES.to_vec()
    }

    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn describe<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        guard(py, || {
            let o = self.inner.options();
            let d = PyDict::new(py);
            d.set_item("name", &o.name)?;
            d.set_item("nfc", o.nfc)?;
            d.set_item("collapse_whitespace", o.collapse_whitespace)?;
            d.set_item("trim", o.trim)?;
            d.set_item("sort_json_keys", o.sort_json_keys)?;
            d.set_item("case_fold", o.case_fold)?;
            d.set_item("strip_timestamps", o.strip_timestamps)?;
            d.set_item("strip_dates", o.strip_dates)?;
            d.set_item("strip_uuids", o.strip_uuids)?;
            d.set_item("strip_patterns", o.strip_patterns.clone())?;
            Ok(d)
        })
    }

    fn canonicalize_text(&self, py: Python<'_>, text: &str) -> PyResult<String> {
        guard(py, || {
            Ok(py.detach(|| self.inner.canonicalize_text(text).into_owned()))
        })
    }

    fn canonicalize_json(&self, py: Python<'_>, json_text: &str) -> PyResult<String> {
        guard(py, || {
            py.detach(|| self.inner.canonicalize_json(json_text))
                .map_err(|e| to_py_err(py, e))
        })
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!("RuleSet(name={})", py_repr(py, self.inner.name()))
    }
}

/// A 128-bit xxh3 key.
#[pyclass(name = "CacheKey", module = "skinflint._native", frozen)]
struct PyCacheKey(u128);

#[pymethods]
impl PyCacheKey {
    #[getter]
    fn hex(&self) -> String {
        key::CacheKey(self.0).hex()
    }

    #[getter]
    fn bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &key::CacheKey(self.0).to_bytes())
    }

    fn __eq__(&self, other: &Self) -> bool {
        self.0 == other.0
    }

    fn __hash__(&self) -> u64 {
        // The low 64 bits of a uniform hash are a uniform hash.
        self.0 as u64
    }

    fn __repr__(&self) -> String {
        format!("CacheKey('{}')", key::CacheKey(self.0).hex())
    }
}

#[pyfunction]
#[pyo3(name = "cache_key")]
fn py_cache_key(
    py: Python<'_>,
    request: &Bound<'_, PyAny>,
    rules: &Bound<'_, PyRuleSet>,
) -> PyResult<PyCacheKey> {
    guard(py, || {
        let rules = &rules.get().inner;
        if let Some(fast) = fast_request(request) {
            return Ok(PyCacheKey(
                fast.run(py, |input| key::cache_key(input, rules).0),
            ));
        }
        let value = request_value(py, request)?;
        py.detach(|| {
            let input = KeyInput::from_value(value)?;
            Ok(PyCacheKey(key::cache_key(&input, rules).0))
        })
        .map_err(|e| to_py_err(py, e))
    })
}

/// `str` or `bytes` as UTF-8 bytes, borrowed from the (immutable) Python object.
fn json_bytes<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<&'a [u8]> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        Ok(b.as_bytes())
    } else if let Ok(s) = obj.cast::<PyString>() {
        Ok(s.to_str()?.as_bytes())
    } else {
        Err(PyTypeError::new_err(format!(
            "request_json: expected str or bytes, got {}",
            type_name(obj)
        )))
    }
}

#[pyfunction]
#[pyo3(name = "cache_key_json")]
fn py_cache_key_json(
    py: Python<'_>,
    request_json: &Bound<'_, PyAny>,
    rules: &Bound<'_, PyRuleSet>,
) -> PyResult<PyCacheKey> {
    guard(py, || {
        let bytes = json_bytes(request_json)?;
        let rules = &rules.get().inner;
        py.detach(|| {
            let input = KeyInput::from_json(bytes)?;
            Ok(PyCacheKey(key::cache_key(&input, rules).0))
        })
        .map_err(|e| to_py_err(py, e))
    })
}

/// A hash of the request up to one cacheable prefix boundary.
#[pyclass(name = "PrefixFingerprint", module = "skinflint._native", frozen)]
struct PyPrefixFingerprint(PrefixFingerprint);

#[pymethods]
impl PyPrefixFingerprint {
    #[getter]
    fn kind(&self) -> &'static str {
        self.0.kind.as_str()
    }

    #[getter]
    fn index(&self) -> usize {
        self.0.index
    }

    #[getter]
    fn hex(&self) -> String {
        self.0.hex()
    }

    #[getter]
    fn cumulative_chars(&self) -> u64 {
        self.0.cumulative_chars
    }

    fn __eq__(&self, other: &Self) -> bool {
        self.0 == other.0
    }

    fn __hash__(&self) -> u64 {
        self.0.hash as u64
    }

    fn __repr__(&self) -> String {
        format!(
            "PrefixFingerprint(kind='{}', index={}, hex='{}', cumulative_chars={})",
            self.0.kind.as_str(),
            self.0.index,
            self.0.hex(),
            self.0.cumulative_chars
        )
    }
}

#[pyfunction]
#[pyo3(name = "prefix_fingerprints")]
fn py_prefix_fingerprints(
    py: Python<'_>,
    request: &Bound<'_, PyAny>,
    rules: &Bound<'_, PyRuleSet>,
) -> PyResult<Vec<PyPrefixFingerprint>> {
    guard(py, || {
        let rules = &rules.get().inner;
        let wrap = |fps: Vec<PrefixFingerprint>| fps.into_iter().map(PyPrefixFingerprint).collect();
        if let Some(fast) = fast_request(request) {
            return Ok(wrap(
                fast.run(py, |input| prefix::prefix_fingerprints(input, rules)),
            ));
        }
        let value = request_value(py, request)?;
        py.detach(|| {
            let input = KeyInput::from_value(value)?;
            Ok(wrap(prefix::prefix_fingerprints(&input, rules)))
        })
        .map_err(|e| to_py_err(py, e))
    })
}

// ---------------------------------------------------------------------------------------
// ResponseCache
// ---------------------------------------------------------------------------------------

#[pyclass(name = "CacheStats", module = "skinflint._native", frozen, get_all)]
struct PyCacheStats {
    entries: u64,
    bytes: u64,
    hits: u64,
    misses: u64,
    evictions: u64,
    expired: u64,
    map_size: u64,
    max_bytes: u64,
}

impl From<CacheStats> for PyCacheStats {
    fn from(s: CacheStats) -> Self {
        let CacheStats {
            entries,
            bytes,
            hits,
            misses,
            evictions,
            expired,
            map_size,
            max_bytes,
        } = s;
        PyCacheStats {
            entries,
            bytes,
            hits,
            misses,
            evictions,
            expired,
            map_size,
            max_bytes,
        }
    }
}

#[pymethods]
impl PyCacheStats {
    fn __repr__(&self) -> String {
        format!(
            "CacheStats(entries={}, bytes={}, hits={}, misses={}, evictions={}, expired={}, \
             map_size={}, max_bytes={})",
            self.entries,
            self.bytes,
            self.hits,
            self.misses,
            self.evictions,
            self.expired,
            self.map_size,
            self.max_bytes
        )
    }
}

/// Response cache on LMDB.
#[pyclass(name = "ResponseCache", module = "skinflint._native", frozen)]
struct PyResponseCache {
    inner: ResponseCache,
}

#[pymethods]
impl PyResponseCache {
    #[new]
    #[pyo3(signature = (path, *, max_bytes = 1 << 30, durable = false))]
    fn new(py: Python<'_>, path: PathBuf, max_bytes: i64, durable: bool) -> PyResult<Self> {
        guard(py, || {
            if max_bytes <= 0 {
                return Err(PyValueError::new_err(format!(
                    "max_bytes must be > 0 (the size bound of the cache, in bytes), got {max_bytes}"
                )));
            }
            let inner = py
                .detach(|| ResponseCache::open(&path, max_bytes as u64, durable))
                .map_err(|e| to_py_err(py, e))?;
            Ok(PyResponseCache { inner })
        })
    }

    #[getter]
    fn path(&self) -> String {
        self.inner.path().to_string_lossy().into_owned()
    }

    /// Keeps the GIL: a hit is a read of a memory-mapped page and one copy (a microsecond
    /// or two), cheaper than releasing the GIL and waiting to take it back from another
    /// thread, which on the hit path cost tens of microseconds under load (bench/cache.py).
    /// The bytes are copied straight from the map into the Python object.
    fn get<'py>(&self, py: Python<'py>, key: &[u8]) -> PyResult<Option<Bound<'py, PyBytes>>> {
        guard(py, || {
            self.inner
                .get_with(key, |value| PyBytes::new(py, value))
                .map_err(|e| to_py_err(py, e))
        })
    }

    fn peek<'py>(&self, py: Python<'py>, key: &[u8]) -> PyResult<Option<Bound<'py, PyBytes>>> {
        guard(py, || {
            let value = py
                .detach(|| self.inner.peek(key))
                .map_err(|e| to_py_err(py, e))?;
            Ok(value.map(|v| PyBytes::new(py, &v)))
        })
    }

    #[pyo3(signature = (key, value, *, ttl_seconds))]
    fn put(&self, py: Python<'_>, key: &[u8], value: &[u8], ttl_seconds: f64) -> PyResult<()> {
        guard(py, || {
            py.detach(|| self.inner.put(key, value, ttl_seconds))
                .map_err(|e| to_py_err(py, e))
        })
    }

    fn delete(&self, py: Python<'_>, key: &[u8]) -> PyResult<bool> {
        guard(py, || {
            py.detach(|| self.inner.delete(key))
                .map_err(|e| to_py_err(py, e))
        })
    }

    fn purge_expired(&self, py: Python<'_>) -> PyResult<u64> {
        guard(py, || {
            py.detach(|| self.inner.purge_expired())
                .map_err(|e| to_py_err(py, e))
        })
    }

    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        guard(py, || {
            py.detach(|| self.inner.clear())
                .map_err(|e| to_py_err(py, e))
        })
    }

    fn stats(&self, py: Python<'_>) -> PyResult<PyCacheStats> {
        guard(py, || {
            py.detach(|| self.inner.stats())
                .map(PyCacheStats::from)
                .map_err(|e| to_py_err(py, e))
        })
    }

    fn sync(&self, py: Python<'_>) -> PyResult<()> {
        guard(py, || {
            py.detach(|| self.inner.sync())
                .map_err(|e| to_py_err(py, e))
        })
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "ResponseCache({}, max_bytes={})",
            py_repr(py, &self.inner.path().to_string_lossy()),
            self.inner.max_bytes()
        )
    }
}

// ---------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------

#[pyclass(name = "TokenCount", module = "skinflint._native", frozen, get_all)]
struct PyTokenCount {
    count: u64,
    exact: bool,
    method: &'static str,
}

impl From<TokenCount> for PyTokenCount {
    fn from(t: TokenCount) -> Self {
        PyTokenCount {
            count: t.count,
            exact: t.exact,
            method: t.method.as_str(),
        }
    }
}

#[pymethods]
impl PyTokenCount {
    fn __repr__(&self) -> String {
        format!(
            "TokenCount(count={}, exact={}, method='{}')",
            self.count,
            if self.exact { "True" } else { "False" },
            self.method
        )
    }
}

#[pyfunction]
#[pyo3(name = "encoding_for_model")]
fn py_encoding_for_model(py: Python<'_>, model: &str) -> PyResult<&'static str> {
    guard(py, || Ok(tokens::encoding_for_model(model).0.as_str()))
}

#[pyfunction]
#[pyo3(name = "count_tokens")]
fn py_count_tokens(py: Python<'_>, model: &str, text: &str) -> PyResult<PyTokenCount> {
    guard(py, || {
        Ok(py.detach(|| tokens::count_tokens(model, text)).into())
    })
}

#[pyfunction]
#[pyo3(name = "count_chat_tokens")]
fn py_count_chat_tokens(
    py: Python<'_>,
    model: &str,
    messages: Vec<(String, String)>,
) -> PyResult<PyTokenCount> {
    guard(py, || {
        Ok(py
            .detach(|| tokens::count_chat_tokens(model, &messages))
            .into())
    })
}

#[pyfunction]
#[pyo3(name = "_panic_for_test")]
fn panic_for_test(py: Python<'_>) -> PyResult<()> {
    guard(py, || {
        py.detach(deliberate_panic);
        Ok(())
    })
}

fn deliberate_panic() {
    panic!("deliberate panic from _panic_for_test()");
}

// ---------------------------------------------------------------------------------------
// BudgetLedger
// ---------------------------------------------------------------------------------------

/// `(budget_id, window_start, limit_nanousd, limit_tokens, nanousd, tokens, window_end)`.
type ChargeTuple = (String, u64, u64, u64, u64, u64, u64);
/// `(spent_nanousd, reserved_nanousd, spent_tokens, reserved_tokens, requests)`.
type StateTuple = (u64, u64, u64, u64, u64);
/// `(budget_id, window_start, limit_nanousd, limit_tokens, state, limit_kind)`.
type DenialTuple = (String, u64, u64, u64, StateTuple, &'static str);
/// `(budget_id, window_start, before, after)`.
type CommittedTuple = (String, u64, StateTuple, StateTuple);

fn state_tuple(s: budget::WindowState) -> StateTuple {
    (
        s.spent_nanousd,
        s.reserved_nanousd,
        s.spent_tokens,
        s.reserved_tokens,
        s.requests,
    )
}

fn to_charges(charges: Vec<ChargeTuple>) -> Vec<budget::Charge> {
    charges
        .into_iter()
        .map(
            |(
                budget_id,
                window_start,
                limit_nanousd,
                limit_tokens,
                nanousd,
                tokens,
                window_end,
            )| {
                budget::Charge {
                    budget_id,
                    window_start,
                    limit_nanousd,
                    limit_tokens,
                    nanousd,
                    tokens,
                    window_end,
                }
            },
        )
        .collect()
}

fn committed_tuples(out: Vec<budget::Committed>) -> Vec<CommittedTuple> {
    out.into_iter()
        .map(|c| {
            (
                c.budget_id,
                c.window_start,
                state_tuple(c.before),
                state_tuple(c.after),
            )
        })
        .collect()
}

/// Budget ledger on LMDB (atomic reserve / commit / release across processes).
/// The spend ledger's row writer (see `appender.rs`).
#[pyclass(name = "RowAppender", module = "skinflint._native", frozen)]
struct PyRowAppender {
    inner: RowAppender,
}

/// One Python value as a SQLite value (`row` names the position for the error message).
fn sql_value(item: &Bound<'_, PyAny>, index: usize) -> PyResult<rusqlite::types::Value> {
    use rusqlite::types::Value as Sql;
    if item.is_none() {
        Ok(Sql::Null)
    } else if let Ok(flag) = item.cast::<PyBool>() {
        Ok(Sql::Integer(i64::from(flag.is_true())))
    } else if item.is_instance_of::<PyInt>() {
        item.extract::<i64>().map(Sql::Integer).map_err(|_| {
            PyValueError::new_err(format!(
                "row[{index}]: the integer does not fit SQLite's 64-bit integers"
            ))
        })
    } else if let Ok(number) = item.cast::<PyFloat>() {
        Ok(Sql::Real(number.value()))
    } else if let Ok(text) = item.cast::<PyString>() {
        Ok(Sql::Text(text.to_str()?.to_owned()))
    } else {
        Err(PyTypeError::new_err(format!(
            "row[{index}]: a {} cannot be stored; give None, bool, int, float or str",
            item.get_type().name()?
        )))
    }
}

#[pymethods]
impl PyRowAppender {
    #[new]
    #[pyo3(signature = (path, table, columns, *, linger_s, max_batch = 1024, rows_per_insert = appender::ROWS_PER_INSERT))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        table: &str,
        columns: Vec<String>,
        linger_s: f64,
        max_batch: usize,
        rows_per_insert: usize,
    ) -> PyResult<Self> {
        guard(py, || {
            if !(linger_s.is_finite() && (0.0..=60.0).contains(&linger_s)) {
                return Err(PyValueError::new_err(format!(
                    "linger_s must be between 0 and 60 seconds, got {linger_s}"
                )));
            }
            let linger = std::time::Duration::from_secs_f64(linger_s);
            let inner = py
                .detach(|| {
                    RowAppender::open(&path, table, &columns, linger, max_batch, rows_per_insert)
                })
                .map_err(|e| to_py_err(py, e))?;
            Ok(PyRowAppender { inner })
        })
    }

    #[getter]
    fn path(&self) -> String {
        self.inner.path().to_string_lossy().into_owned()
    }

    /// Queues a row (a tuple of None, bool, int, float, str); returns the failed-row count.
    /// Stays attached: copying the values is a microsecond, and the queue never blocks.
    fn append(&self, py: Python<'_>, row: &Bound<'_, PyTuple>) -> PyResult<u64> {
        guard(py, || {
            let values = row
                .iter()
                .enumerate()
                .map(|(i, item)| sql_value(&item, i))
                .collect::<PyResult<Vec<_>>>()?;
            self.inner.append(values).map_err(|e| to_py_err(py, e))
        })
    }

    #[pyo3(signature = (timeout_s = None))]
    fn flush(&self, py: Python<'_>, timeout_s: Option<f64>) -> PyResult<bool> {
        guard(py, || {
            let timeout = match timeout_s {
                None => None,
                Some(t) if t.is_finite() && t >= 0.0 => {
                    Some(std::time::Duration::from_secs_f64(t.min(1e9)))
                }
                Some(t) => {
                    return Err(PyValueError::new_err(format!(
                        "timeout_s must be a finite number >= 0 or None, got {t}"
                    )))
                }
            };
            Ok(py.detach(|| self.inner.flush(timeout)))
        })
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        guard(py, || {
            py.detach(|| self.inner.close());
            Ok(())
        })
    }

    #[getter]
    fn appended(&self) -> u64 {
        self.inner.stats().appended
    }

    #[getter]
    fn processed(&self) -> u64 {
        self.inner.stats().processed
    }

    #[getter]
    fn failed(&self) -> u64 {
        self.inner.stats().failed
    }

    #[getter]
    fn commits(&self) -> u64 {
        self.inner.stats().commits
    }

    #[getter]
    fn last_error(&self) -> Option<String> {
        self.inner.stats().last_error
    }
}

#[pyclass(name = "BudgetLedger", module = "skinflint._native", frozen)]
struct PyBudgetLedger {
    inner: BudgetLedger,
}

#[pymethods]
impl PyBudgetLedger {
    #[new]
    #[pyo3(signature = (path, *, durable = false))]
    fn new(py: Python<'_>, path: PathBuf, durable: bool) -> PyResult<Self> {
        guard(py, || {
            let inner = py
                .detach(|| BudgetLedger::open(&path, durable))
                .map_err(|e| to_py_err(py, e))?;
            Ok(PyBudgetLedger { inner })
        })
    }

    #[getter]
    fn path(&self) -> String {
        self.inner.path().to_string_lossy().into_owned()
    }

    #[getter]
    fn durable(&self) -> bool {
        self.inner.durable()
    }

    #[pyo3(signature = (reservation_id, charges, *, ttl_ms, now_ms))]
    fn reserve(
        &self,
        py: Python<'_>,
        reservation_id: &str,
        charges: Vec<ChargeTuple>,
        ttl_ms: u64,
        now_ms: u64,
    ) -> PyResult<Option<DenialTuple>> {
        guard(py, || {
            let charges = to_charges(charges);
            let denial = py
                .detach(|| self.inner.reserve(reservation_id, &charges, ttl_ms, now_ms))
                .map_err(|e| to_py_err(py, e))?;
            Ok(denial.map(|d| {
                (
                    d.budget_id,
                    d.window_start,
                    d.limit_nanousd,
                    d.limit_tokens,
                    state_tuple(d.state),
                    d.limit_kind.as_str(),
                )
            }))
        })
    }

    #[pyo3(signature = (reservation_id, *, nanousd, tokens, now_ms))]
    fn commit(
        &self,
        py: Python<'_>,
        reservation_id: &str,
        nanousd: u64,
        tokens: u64,
        now_ms: u64,
    ) -> PyResult<Vec<CommittedTuple>> {
        guard(py, || {
            py.detach(|| self.inner.commit(reservation_id, nanousd, tokens, now_ms))
                .map(committed_tuples)
                .map_err(|e| to_py_err(py, e))
        })
    }

    #[pyo3(signature = (reservation_id, *, now_ms))]
    fn release(&self, py: Python<'_>, reservation_id: &str, now_ms: u64) -> PyResult<()> {
        guard(py, || {
            py.detach(|| self.inner.release(reservation_id, now_ms))
                .map_err(|e| to_py_err(py, e))
        })
    }

    #[pyo3(signature = (charges, *, nanousd, tokens, now_ms))]
    fn record(
        &self,
        py: Python<'_>,
        charges: Vec<ChargeTuple>,
        nanousd: u64,
        tokens: u64,
        now_ms: u64,
    ) -> PyResult<Vec<CommittedTuple>> {
        guard(py, || {
            let charges = to_charges(charges);
            py.detach(|| self.inner.record(&charges, nanousd, tokens, now_ms))
                .map(committed_tuples)
                .map_err(|e| to_py_err(py, e))
        })
    }

    #[pyo3(signature = (budget_id, window_start, *, now_ms))]
    fn state(
        &self,
        py: Python<'_>,
        budget_id: &str,
        window_start: u64,
        now_ms: u64,
    ) -> PyResult<StateTuple> {
        guard(py, || {
            py.detach(|| self.inner.state(budget_id, window_start, now_ms))
                .map(state_tuple)
                .map_err(|e| to_py_err(py, e))
        })
    }

    #[pyo3(signature = (*, now_ms))]
    fn purge_expired(&self, py: Python<'_>, now_ms: u64) -> PyResult<u64> {
        guard(py, || {
            py.detach(|| self.inner.purge_expired(now_ms))
                .map_err(|e| to_py_err(py, e))
        })
    }

    fn put_spec(&self, py: Python<'_>, budget_id: &str, spec_json: &str) -> PyResult<()> {
        guard(py, || {
            py.detach(|| self.inner.put_spec(budget_id, spec_json))
                .map_err(|e| to_py_err(py, e))
        })
    }

    fn get_spec(&self, py: Python<'_>, budget_id: &str) -> PyResult<Option<String>> {
        guard(py, || {
            py.detach(|| self.inner.get_spec(budget_id))
                .map_err(|e| to_py_err(py, e))
        })
    }

    fn list_specs(&self, py: Python<'_>) -> PyResult<Vec<(String, String)>> {
        guard(py, || {
            py.detach(|| self.inner.list_specs())
                .map_err(|e| to_py_err(py, e))
        })
    }

    fn delete_spec(&self, py: Python<'_>, budget_id: &str) -> PyResult<bool> {
        guard(py, || {
            py.detach(|| self.inner.delete_spec(budget_id))
                .map_err(|e| to_py_err(py, e))
        })
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "BudgetLedger({}, durable={})",
            py_repr(py, &self.inner.path().to_string_lossy()),
            if self.inner.durable() {
                "True"
            } else {
                "False"
            }
        )
    }
}

// ---------------------------------------------------------------------------------------
// Semantic cache: Embedder, SemanticIndex
// ---------------------------------------------------------------------------------------

/// A sentence-embedding model directory; the model loads on the first `embed` (once per
/// process per directory). Construction only checks that the files are there.
#[pyclass(name = "Embedder", module = "skinflint._native", frozen)]
struct PyEmbedder {
    dir: PathBuf,
    model: std::sync::OnceLock<std::sync::Arc<Embedder>>,
}

impl PyEmbedder {
    fn model(&self) -> Result<&Embedder, CoreError> {
        if let Some(model) = self.model.get() {
            return Ok(model.as_ref());
        }
        let model = Embedder::shared(&self.dir)?;
        Ok(self.model.get_or_init(|| model).as_ref())
    }
}

#[pymethods]
impl PyEmbedder {
    #[new]
    fn new(py: Python<'_>, model_dir: PathBuf) -> PyResult<Self> {
        guard(py, || {
            embed::check_model_dir(&model_dir).map_err(|e| to_py_err(py, e))?;
            Ok(PyEmbedder {
                dir: model_dir,
                model: std::sync::OnceLock::new(),
            })
        })
    }

    #[getter]
    fn model_dir(&self) -> String {
        self.dir.to_string_lossy().into_owned()
    }

    /// Loads the model now (otherwise the first `embed` does).
    fn load(&self, py: Python<'_>) -> PyResult<()> {
        guard(py, || {
            py.detach(|| self.model().map(|_| ()))
                .map_err(|e| to_py_err(py, e))
        })
    }

    /// The unit-length embedding of `text` (384 floats for MiniLM).
    fn embed(&self, py: Python<'_>, text: &str) -> PyResult<Vec<f32>> {
        guard(py, || {
            py.detach(|| self.model()?.embed(text))
                .map_err(|e| to_py_err(py, e))
        })
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!("Embedder({})", py_repr(py, &self.dir.to_string_lossy()))
    }
}

/// The semantic cache's persistent vector index (see `vindex.rs`).
#[pyclass(name = "SemanticIndex", module = "skinflint._native", frozen)]
struct PySemanticIndex {
    inner: VectorIndex,
}

#[pymethods]
impl PySemanticIndex {
    #[new]
    #[pyo3(signature = (path, *, dim = 384, max_entries = 1_000_000, durable = false))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        dim: usize,
        max_entries: usize,
        durable: bool,
    ) -> PyResult<Self> {
        guard(py, || {
            let inner = py
                .detach(|| VectorIndex::open(&path, dim, max_entries, durable))
                .map_err(|e| to_py_err(py, e))?;
            Ok(PySemanticIndex { inner })
        })
    }

    #[getter]
    fn path(&self) -> String {
        self.inner.path().to_string_lossy().into_owned()
    }

    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    #[pyo3(signature = (namespace, key, vector, *, ttl_seconds))]
    fn add(
        &self,
        py: Python<'_>,
        namespace: &[u8],
        key: &[u8],
        vector: Vec<f32>,
        ttl_seconds: f64,
    ) -> PyResult<()> {
        guard(py, || {
            py.detach(|| self.inner.add(namespace, key, &vector, ttl_seconds))
                .map_err(|e| to_py_err(py, e))
        })
    }

    /// The `k` best `(score, key)` of `namespace` with a score >= `min_score`, best first.
    #[pyo3(signature = (namespace, vector, *, k = 1, min_score = -1.0))]
    fn search<'py>(
        &self,
        py: Python<'py>,
        namespace: &[u8],
        vector: Vec<f32>,
        k: usize,
        min_score: f32,
    ) -> PyResult<Vec<(f32, Bound<'py, PyBytes>)>> {
        guard(py, || {
            let found = py
                .detach(|| self.inner.search(namespace, &vector, k, min_score))
                .map_err(|e| to_py_err(py, e))?;
            Ok(found
                .into_iter()
                .map(|m| (m.score, PyBytes::new(py, &m.key)))
                .collect())
        })
    }

    fn purge_expired(&self, py: Python<'_>) -> PyResult<u64> {
        guard(py, || {
            py.detach(|| self.inner.purge_expired())
                .map_err(|e| to_py_err(py, e))
        })
    }

    /// Rows stored under `namespace` (expired ones included until purged).
    fn count(&self, py: Python<'_>, namespace: &[u8]) -> PyResult<usize> {
        guard(py, || {
            py.detach(|| self.inner.len(namespace))
                .map_err(|e| to_py_err(py, e))
        })
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "SemanticIndex({}, dim={})",
            py_repr(py, &self.inner.path().to_string_lossy()),
            self.inner.dim()
        )
    }
}

// ---------------------------------------------------------------------------------------
// Module
// ---------------------------------------------------------------------------------------

#[pymodule]
#[pyo3(name = "_native")]
fn native_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;

    let t = exception_types(py)?;
    m.add("NativeError", t.native.bind(py))?;
    m.add("KeyInputError", t.key_input.bind(py))?;
    m.add("RuleSetError", t.rule_set.bind(py))?;
    m.add("CacheError", t.cache.bind(py))?;
    m.add("BudgetLedgerError", t.budget.bind(py))?;
    m.add("TokenizerError", t.tokenizer.bind(py))?;
    m.add("NativePanic", t.panic.bind(py))?;
    m.add("EmbeddingError", t.embedding.bind(py))?;
    m.add("LedgerError", t.ledger.bind(py))?;

    m.add_class::<PyRuleSet>()?;
    m.add_class::<PyCacheKey>()?;
    m.add_class::<PyPrefixFingerprint>()?;
    m.add_class::<PyCacheStats>()?;
    m.add_class::<PyResponseCache>()?;
    m.add_class::<PyTokenCount>()?;
    m.add_class::<PyBudgetLedger>()?;
    m.add_class::<PyEmbedder>()?;
    m.add_class::<PySemanticIndex>()?;
    m.add_class::<PyRowAppender>()?;

    m.add_function(wrap_pyfunction!(py_cache_key, m)?)?;
    m.add_function(wrap_pyfunction!(py_cache_key_json, m)?)?;
    m.add_function(wrap_pyfunction!(py_prefix_fingerprints, m)?)?;
    m.add_function(wrap_pyfunction!(py_encoding_for_model, m)?)?;
    m.add_function(wrap_pyfunction!(py_count_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(py_count_chat_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(panic_for_test, m)?)?;
    Ok(())
}
