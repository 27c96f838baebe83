//! Parameter schemas: the subset of JSON Schema an app kind's parameters
//! are described and checked with, before its factory sees them.
//!
//! Keywords: `type` (object, string, integer, number, boolean, array),
//! `properties`, `required`, `additionalProperties: false`, `enum`,
//! `minimum`, `maximum`, `items`, `default` (filled in where a property is
//! missing) and `description` (for people). A schema that uses anything
//! else is a bug of its kind, caught by `check_schema` when the kind is
//! registered, not when a client deploys.

use serde_json::{Map, Value};

use crate::error::ParamError;

const KEYWORDS: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "enum",
    "minimum",
    "maximum",
    "items",
    "default",
    "description",
];

/// Whether `schema` uses only the keywords this validator knows.
pub(crate) fn check_schema(schema: &Value) -> Result<(), String> {
    let Some(obj) = schema.as_object() else {
        return Err("a schema is a JSON object".into());
    };
    if let Some(k) = obj.keys().find(|k| !KEYWORDS.contains(&k.as_str())) {
        return Err(format!("unsupported schema keyword {k:?}"));
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        props.values().try_for_each(check_schema)?;
    }
    if let Some(items) = obj.get("items") {
        check_schema(items)?;
    }
    Ok(())
}

/// `params` checked against `schema`, with defaults filled in.
pub(crate) fn validate(schema: &Value, params: Value) -> Result<Value, ParamError> {
    check(schema, params, "params")
}

fn check(schema: &Value, v: Value, path: &str) -> Result<Value, ParamError> {
    let bad = |reason: String| ParamError {
        path: path.to_owned(),
        reason,
    };
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        if !has_type(&v, t) {
            return Err(bad(format!("expected {t}, got {}", type_of(&v))));
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(&v) {
            return Err(bad(format!(
                "must be one of {}",
                Value::Array(options.clone())
            )));
        }
    }
    if let Some(x) = v.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if x < min {
                return Err(bad(format!("must be at least {min}")));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if x > max {
                return Err(bad(format!("must be at most {max}")));
            }
        }
    }
    match v {
        Value::Object(map) => check_object(schema, map, path).map(Value::Object),
        Value::Array(items) => match schema.get("items") {
            Some(item) => items
                .into_iter()
                .enumerate()
                .map(|(i, x)| check(item, x, &format!("{path}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            None => Ok(Value::Array(items)),
        },
        v => Ok(v),
    }
}

fn check_object(
    schema: &Value,
    mut map: Map<String, Value>,
    path: &str,
) -> Result<Map<String, Value>, ParamError> {
    let empty = Map::new();
    let props = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    if schema.get("additionalProperties") == Some(&Value::Bool(false)) {
        if let Some(k) = map.keys().find(|k| !props.contains_key(*k)) {
            return Err(ParamError {
                path: format!("{path}.{k}"),
                reason: format!("unknown parameter (known: {})", names(props)),
            });
        }
    }
    for (name, sub) in props {
        if !map.contains_key(name) {
            if let Some(d) = sub.get("default") {
                map.insert(name.clone(), d.clone());
            }
        }
    }
    let required = schema.get("required").and_then(Value::as_array);
    if let Some(missing) = required
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|r| !map.contains_key(*r))
    {
        return Err(ParamError {
            path: format!("{path}.{missing}"),
            reason: "required".into(),
        });
    }
    let mut out = Map::new();
    for (k, v) in map {
        let v = match props.get(&k) {
            Some(sub) => check(sub, v, &format!("{path}.{k}"))?,
            None => v,
        };
        out.insert(k, v);
    }
    Ok(out)
}

fn names(props: &Map<String, Value>) -> String {
    props.keys().cloned().collect::<Vec<_>>().join(", ")
}

fn has_type(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "null" => v.is_null(),
        _ => false,
    }
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["field"],
            "properties": {
                "field": {"type": "string"},
                "fn": {"type": "string", "enum": ["sum", "count"], "default": "count"},
                "work_us": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 0}
            }
        })
    }

    #[test]
    fn defaults_are_filled_and_values_checked() {
        let v = validate(&schema(), json!({"field": "x"})).unwrap();
        assert_eq!(v, json!({"field": "x", "fn": "count", "work_us": 0}));
        let cases = [
            (json!({}), "params.field", "required"),
            (json!({"field": 3}), "params.field", "expected string"),
            (
                json!({"field": "x", "fn": "max"}),
                "params.fn",
                "must be one of",
            ),
            (
                json!({"field": "x", "work_us": -1}),
                "params.work_us",
                "at least",
            ),
            (
                json!({"field": "x", "work_us": 1.5}),
                "params.work_us",
                "expected integer",
            ),
            (
                json!({"field": "x", "other": 1}),
                "params.other",
                "unknown parameter",
            ),
            (json!([1]), "params", "expected object"),
        ];
        for (params, path, reason) in cases {
            let e = validate(&schema(), params.clone()).unwrap_err();
            assert_eq!(e.path, path, "{params}");
            assert!(e.reason.contains(reason), "{params}: {}", e.reason);
        }
    }

    #[test]
    fn unknown_keywords_are_refused_at_registration() {
        assert!(check_schema(&schema()).is_ok());
        let bad = json!({"type": "object", "properties": {"a": {"pattern": "x"}}});
        assert!(check_schema(&bad).unwrap_err().contains("pattern"));
    }
}
