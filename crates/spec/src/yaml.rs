//! The raw YAML layer shared by both file formats: a tree of nodes that keep
//! their source location, and small decoding helpers that record every
//! problem instead of stopping at the first one.
//!
//! Why a generic tree instead of deriving `Deserialize` on the raw types:
//! serde stops at the first error, and gantry reports all of them at once
//! (formats.md: "all errors reported at once"). So serde-saphyr only turns
//! the text into [`Node`]s (aliases, merge keys and budgets are its job), and
//! the decoders in `pipeline`, `environment`, `service` and `buildspec` walk
//! the tree, noting each unknown key or wrong type in a [`Diagnostics`] and
//! carrying on.
//!
//! Scalars keep their source text: `FOO: 5.10` must become `"5.10"`, not the
//! float `5.1`, and `O: 0755` must stay `"0755"`.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{MessageFormatter, Spanned};

use crate::duration::{format_duration, parse_duration, parse_duration_or_zero};
pub(crate) use crate::location::Located;
use crate::location::{Location, SpecError};

mod hint;

/// One YAML node with the place it is used at (for an alias, the alias).
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) value: Value,
    pub(crate) location: Location,
    /// The scalar as written (without quotes for quoted scalars), when it was
    /// typed as a boolean or a number, so that it can be read back as text.
    raw: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// What kind of node this is, for messages such as "expected a list, found a mapping".
    pub(crate) fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The text of a scalar as written; `None` for null, lists and mappings.
    pub(crate) fn scalar_text(&self) -> Option<Cow<'_, str>> {
        match &self.value {
            Value::Str(s) => Some(Cow::Borrowed(s)),
            Value::Bool(b) => Some(self.raw_or(b)),
            Value::Int(i) => Some(self.raw_or(i)),
            Value::Float(f) => Some(self.raw_or(f)),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }

    fn raw_or(&self, value: &dyn fmt::Display) -> Cow<'_, str> {
        match &self.raw {
            Some(raw) => Cow::Borrowed(raw),
            None => Cow::Owned(value.to_string()),
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }
}

/// Parses `text` into a node tree; a syntax error is one [`SpecError`] at the
/// parser's location.
pub(crate) fn parse(file: &str, text: &str) -> Result<Node, SpecError> {
    // Booleans are the YAML 1.2 ones (`true`/`false`) so that keys and values
    // such as `N`, `YES` or `on` stay strings; the decoders accept `yes`/`no`
    // where a boolean is expected, as CodeBuild does. Non-finite floats come
    // back as text so that `.nan` is a string instead of an error.
    let options = serde_saphyr::options! {
        with_snippet: false,
        strict_booleans: true,
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::AsString,
    };
    match serde_saphyr::from_str_with_options::<Spanned<RawValue>>(text, options) {
        Ok(root) => Ok(Node::from_spanned(text, root)),
        Err(err) => {
            let location = err
                .location()
                .map(convert_location)
                .unwrap_or(Location { line: 1, col: 1 });
            let message = serde_saphyr::UserMessageFormatter
                .format_message(&err)
                .into_owned();
            let (location, message) =
                hint::explain(text, location, &message).unwrap_or((location, message));
            Err(SpecError {
                file: file.to_owned(),
                location,
                message,
            })
        }
    }
}

fn convert_location(location: serde_saphyr::Location) -> Location {
    // Location::UNKNOWN is line 0; report such nodes at the top of the file
    // rather than at an impossible 0:0.
    let line = usize::try_from(location.line())
        .unwrap_or(usize::MAX)
        .max(1);
    let col = usize::try_from(location.column())
        .unwrap_or(usize::MAX)
        .max(1);
    Location { line, col }
}

impl Node {
    fn from_spanned(text: &str, spanned: Spanned<RawValue>) -> Node {
        let location = convert_location(spanned.referenced);
        let raw = match spanned.value {
            RawValue::Bool(_) | RawValue::Int(_) | RawValue::Float(_) => {
                source_slice(text, spanned.defined).map(|s| s.trim().to_owned())
            }
            _ => None,
        };
        let value = match spanned.value {
            RawValue::Null => Value::Null,
            RawValue::Bool(b) => Value::Bool(b),
            RawValue::Int(i) => Value::Int(i),
            RawValue::Float(f) => Value::Float(f),
            RawValue::Str(s) => Value::Str(s),
            RawValue::Seq(items) => Value::Seq(
                items
                    .into_iter()
                    .map(|item| Node::from_spanned(text, item))
                    .collect(),
            ),
            RawValue::Map(entries) => Value::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| (Node::from_spanned(text, k), Node::from_spanned(text, v)))
                    .collect(),
            ),
        };
        Node {
            value,
            location,
            raw,
        }
    }
}

/// The bytes a node was written as, when the parser knows them.
fn source_slice(text: &str, location: serde_saphyr::Location) -> Option<&str> {
    let span = location.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    text.get(start..start.checked_add(len)?)
}

/// What serde-saphyr hands over: typed scalars and spanned children.
enum RawValue {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<RawValue>>),
    Map(Vec<(Spanned<RawValue>, Spanned<RawValue>)>),
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawValueVisitor)
    }
}

struct RawValueVisitor;

impl<'de> Visitor<'de> for RawValueVisitor {
    type Value = RawValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawValue, E> {
        Ok(RawValue::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<RawValue, E> {
        Ok(RawValue::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<RawValue, D::Error> {
        RawValue::deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawValue, E> {
        Ok(RawValue::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawValue, E> {
        Ok(RawValue::Int(i128::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawValue, E> {
        Ok(RawValue::Int(i128::from(v)))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<RawValue, E> {
        Ok(RawValue::Int(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawValue, E> {
        Ok(RawValue::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawValue, E> {
        Ok(RawValue::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<RawValue, E> {
        Ok(RawValue::Str(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<RawValue, E> {
        Ok(RawValue::Str(String::from_utf8_lossy(v).into_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(RawValue::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawValue, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(RawValue::Map(entries))
    }
}

/// Errors (and warnings) found so far in one file.
pub(crate) struct Diagnostics<'f> {
    file: &'f str,
    pub(crate) errors: Vec<SpecError>,
    pub(crate) warnings: Vec<SpecError>,
}

impl<'f> Diagnostics<'f> {
    pub(crate) fn new(file: &'f str) -> Self {
        Diagnostics {
            file,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, location: Location, message: impl Into<String>) {
        self.errors.push(SpecError {
            file: self.file.to_owned(),
            location,
            message: message.into(),
        });
    }

    pub(crate) fn warn(&mut self, location: Location, message: impl Into<String>) {
        self.warnings.push(SpecError {
            file: self.file.to_owned(),
            location,
            message: message.into(),
        });
    }

    /// Errors in file order; the sort is stable so problems found at the same
    /// place keep the order in which they were checked.
    pub(crate) fn into_sorted(self) -> (Vec<SpecError>, Vec<SpecError>) {
        let mut errors = self.errors;
        let mut warnings = self.warnings;
        errors.sort_by_key(|e| e.location);
        warnings.sort_by_key(|e| e.location);
        (errors, warnings)
    }

    /// The entries of a mapping, or an error naming `what` was expected.
    pub(crate) fn map<'n>(&mut self, node: &'n Node, what: &str) -> Option<Fields<'n>> {
        let Value::Map(entries) = &node.value else {
            self.error(
                node.location,
                format!("{what} must be a mapping, found {}", node.kind()),
            );
            return None;
        };
        let mut fields = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            match key.scalar_text() {
                Some(name) => fields.push(Field {
                    key: name.into_owned(),
                    key_node: key,
                    value,
                }),
                None => self.error(
                    key.location,
                    format!("keys must be strings, found {}", key.kind()),
                ),
            }
        }
        Some(Fields {
            location: node.location,
            fields,
        })
    }

    /// Like [`Diagnostics::map`], but null (a key with nothing under it) is an
    /// empty mapping.
    pub(crate) fn map_or_empty<'n>(&mut self, node: &'n Node, what: &str) -> Option<Fields<'n>> {
        if node.is_null() {
            return Some(Fields {
                location: node.location,
                fields: Vec::new(),
            });
        }
        self.map(node, what)
    }

    /// A string; numbers and booleans count as the text they were written as.
    pub(crate) fn string(&mut self, node: &Node, what: &str) -> Option<Located<String>> {
        match (&node.value, node.scalar_text()) {
            (Value::Str(_) | Value::Bool(_) | Value::Int(_) | Value::Float(_), Some(text)) => {
                Some(Located::new(text.into_owned(), node.location))
            }
            _ => {
                self.error(
                    node.location,
                    format!("{what} must be a string, found {}", node.kind()),
                );
                None
            }
        }
    }

    /// Like [`Diagnostics::string`], but null is the empty string: `FOO:` with
    /// nothing after it is how people write an empty variable.
    pub(crate) fn string_or_empty(&mut self, node: &Node, what: &str) -> Option<Located<String>> {
        if node.is_null() {
            return Some(Located::new(String::new(), node.location));
        }
        self.string(node, what)
    }

    /// A list of strings. With `single`, one string stands for a list of one
    /// (CodeBuild accepts `files: '**/*'`). Null is an empty list, since a key
    /// whose items are all commented out is common in real files.
    pub(crate) fn string_list(
        &mut self,
        node: &Node,
        what: &str,
        single: bool,
    ) -> Option<Vec<Located<String>>> {
        match &node.value {
            Value::Null => Some(Vec::new()),
            Value::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for item in items {
                    match self.string(item, &format!("each item of {what}")) {
                        Some(s) => out.push(s),
                        None => ok = false,
                    }
                }
                ok.then_some(out)
            }
            Value::Str(_) | Value::Bool(_) | Value::Int(_) | Value::Float(_) if single => {
                self.string(node, what).map(|s| vec![s])
            }
            _ => {
                let expected = if single {
                    "a list of strings or one string"
                } else {
                    "a list of strings"
                };
                self.error(
                    node.location,
                    format!("{what} must be {expected}, found {}", node.kind()),
                );
                None
            }
        }
    }

    /// A whole number from `min` to `max`. Text such as `"8080"` is refused:
    /// a number in quotes is usually a sign that something else was meant.
    pub(crate) fn whole_number(
        &mut self,
        node: &Node,
        what: &str,
        min: i128,
        max: i128,
    ) -> Option<Located<i128>> {
        let Value::Int(value) = node.value else {
            let found = node
                .scalar_text()
                .map_or_else(|| node.kind().to_owned(), |t| format!("`{t}`"));
            self.error(
                node.location,
                format!("{what} must be a whole number from {min} to {max}, found {found}"),
            );
            return None;
        };
        if !(min..=max).contains(&value) {
            self.error(
                node.location,
                format!("{what} must be from {min} to {max}, found {value}"),
            );
            return None;
        }
        Some(Located::new(value, node.location))
    }

    /// A duration (`90s`, `30m`, `2h`, `7d`) from `min` to `max`; zero is
    /// allowed only when `min` is zero.
    pub(crate) fn duration(
        &mut self,
        node: &Node,
        what: &str,
        min: Duration,
        max: Duration,
    ) -> Option<Located<Duration>> {
        let text = self.string(node, what)?;
        let parsed = if min.is_zero() {
            parse_duration_or_zero(&text.value)
        } else {
            parse_duration(&text.value)
        };
        match parsed {
            Ok(value) if (min..=max).contains(&value) => Some(Located::new(value, text.location)),
            Ok(value) => {
                self.error(
                    text.location,
                    format!(
                        "{what} must be from {} to {}, found {}",
                        format_duration(min),
                        format_duration(max),
                        format_duration(value)
                    ),
                );
                None
            }
            Err(message) => {
                self.error(text.location, message);
                None
            }
        }
    }

    /// A boolean written as CodeBuild allows: `yes`, `no`, `true` or `false`.
    pub(crate) fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        if let Value::Bool(b) = node.value {
            return Some(b);
        }
        if let Value::Str(s) = &node.value {
            match s.to_ascii_lowercase().as_str() {
                "yes" | "true" => return Some(true),
                "no" | "false" => return Some(false),
                _ => {}
            }
        }
        let found = match node.scalar_text() {
            Some(text) => format!("`{text}`"),
            None => node.kind().to_owned(),
        };
        self.error(
            node.location,
            format!("{what} must be yes, no, true or false, found {found}"),
        );
        None
    }
}

/// The string-keyed entries of one mapping, in file order.
pub(crate) struct Fields<'n> {
    pub(crate) location: Location,
    pub(crate) fields: Vec<Field<'n>>,
}

pub(crate) struct Field<'n> {
    pub(crate) key: String,
    pub(crate) key_node: &'n Node,
    pub(crate) value: &'n Node,
}

impl<'n> Fields<'n> {
    /// The value under `key`, if present.
    pub(crate) fn get(&self, key: &str) -> Option<&'n Node> {
        self.fields.iter().find(|f| f.key == key).map(|f| f.value)
    }

    /// The field under `key`, if present (its key node locates the key itself).
    pub(crate) fn field(&self, key: &str) -> Option<&Field<'n>> {
        self.fields.iter().find(|f| f.key == key)
    }

    /// Reports every key not in `known`, naming the known ones.
    pub(crate) fn deny_unknown(&self, diag: &mut Diagnostics<'_>, known: &[&str], context: &str) {
        for field in &self.fields {
            if !known.contains(&field.key.as_str()) {
                diag.error(
                    field.key_node.location,
                    format!(
                        "unknown key `{}` {context}{}; expected one of: {}",
                        field.key,
                        crate::suggest::did_you_mean(&field.key, known.iter().copied()),
                        known.join(", ")
                    ),
                );
            }
        }
    }

    /// The value under a key that must be present; reports it missing otherwise.
    pub(crate) fn required(
        &self,
        diag: &mut Diagnostics<'_>,
        key: &str,
        context: &str,
    ) -> Option<&'n Node> {
        let value = self.get(key);
        if value.is_none() {
            diag.error(
                self.location,
                format!("missing required key `{key}` {context}"),
            );
        }
        value
    }
}
