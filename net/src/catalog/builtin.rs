//! The kinds every node's catalog holds: the demo's and the benchmarks'
//! apps (`wordcount`, `sensors`, `clicks`) and a generic keyed
//! `aggregate`: key by one field of a JSON object, count / sum / min /
//! max / mean of another, closed by window barriers.

use dirigo_engine::key_hash;
use serde_json::{json, Value};

use crate::error::CodecError;

use super::{AppKind, Built, DeploySpec, Ports};
use crate::apps::{self, AggFn, Click, Reading, Row, WindowRow};

pub(super) fn kinds() -> Vec<AppKind> {
    vec![wordcount(), sensors(), clicks(), aggregate()]
}

/// The `work_us` parameter every bench app has.
fn work_schema() -> Value {
    json!({
        "type": "integer", "minimum": 0, "maximum": 100000, "default": 0,
        "description": "CPU work per message, µs (the stand-in for real work)"
    })
}

fn work_us(params: &Value) -> u64 {
    params.get("work_us").and_then(Value::as_u64).unwrap_or(0)
}

fn engine(e: dirigo_engine::EngineError) -> String {
    e.to_string()
}

fn not_durable(spec: &DeploySpec, kind: &str) -> Result<(), String> {
    if spec.durable {
        return Err(format!(
            "{kind} apps cannot be durable (their state has no byte form)"
        ));
    }
    Ok(())
}

fn wordcount() -> AppKind {
    let schema = json!({
        "type": "object", "additionalProperties": false,
        "properties": {"work_us": work_schema()}
    });
    AppKind::new(
        "wordcount",
        "lines -> words -> windowed count per word; source `lines` (strings), sink `out` ([window, word, count])",
        schema,
        |spec, params| {
            let (app, rx) =
                apps::wordcount_on(spec.builder(), work_us(params), spec.durable).map_err(engine)?;
            let ports = Ports::new()
                .source::<String>("lines", |l| key_hash(l.as_bytes()))
                .sink::<WindowRow>("out", rx);
            Ok(Built::new(app, ports))
        },
    )
    .with_state_dump(apps::wordcount_state_json)
}

fn sensors() -> AppKind {
    let schema = json!({
        "type": "object", "additionalProperties": false,
        "properties": {"work_us": work_schema()}
    });
    AppKind::new(
        "sensors",
        "readings -> windowed mean per sensor (sink `out`) and threshold alerts (sink `alert-sink`); source `readings` ({sensor, value})",
        schema,
        |spec, params| {
            not_durable(spec, "sensors")?;
            let (app, rx, alerts) = apps::sensors_on(spec.builder(), work_us(params)).map_err(engine)?;
            let ports = Ports::new()
                .source::<Reading>("readings", |r| r.sensor as u64)
                .sink::<WindowRow>("out", rx)
                .sink::<Reading>("alert-sink", alerts);
            Ok(Built::new(app, ports))
        },
    )
}

fn clicks() -> AppKind {
    let schema = json!({
        "type": "object", "additionalProperties": false,
        "properties": {"work_us": work_schema()}
    });
    AppKind::new(
        "clicks",
        "clicks -> windowed sessions per user; source `clicks` ({user, page}), sink `out`",
        schema,
        |spec, params| {
            not_durable(spec, "clicks")?;
            let (app, rx) = apps::clicks_on(spec.builder(), work_us(params)).map_err(engine)?;
            let ports = Ports::new()
                .source::<Click>("clicks", |c| c.user)
                .sink::<WindowRow>("out", rx);
            Ok(Built::new(app, ports))
        },
    )
}

fn aggregate() -> AppKind {
    let schema = json!({
        "type": "object", "additionalProperties": false,
        "required": ["fn"],
        "properties": {
            "fn": {"type": "string", "enum": ["count", "sum", "min", "max", "mean"],
                   "description": "what to compute per key and window"},
            "key_field": {"type": "string", "default": "key",
                          "description": "the JSON event's field to group by (a string or a number)"},
            "value_field": {"type": "string", "default": "value",
                            "description": "the JSON event's field to aggregate (a number)"}
        }
    });
    AppKind::new(
        "aggregate",
        "a keyed aggregate closed by window barriers; source `events` ({key, value}), sink `out` ([window, key, result])",
        schema,
        |spec, params| {
            let f: AggFn = serde_json::from_value(params["fn"].clone()).map_err(|e| e.to_string())?;
            let (app, rx) = apps::aggregate_on(spec.builder(), f, spec.durable).map_err(engine)?;
            let key = params["key_field"].as_str().unwrap_or("key").to_owned();
            let value = params["value_field"].as_str().unwrap_or("value").to_owned();
            let read = move |v: Value| row_of(&v, &key, &value);
            let ports = Ports::new()
                .source_with::<Row>("events", |r| key_hash(r.key.as_bytes()), read)
                .sink::<WindowRow>("out", rx);
            Ok(Built::new(app, ports))
        },
    )
    .with_state_dump(apps::aggregate_state_json)
}

/// A JSON object's `key` field (a string, or a number as its text) and
/// `value` field (a number) as a `Row`.
fn row_of(v: &Value, key: &str, value: &str) -> Result<Row, CodecError> {
    let field = |f: &str| {
        v.get(f)
            .ok_or_else(|| CodecError::Json(format!("the event has no field {f:?}")))
    };
    let k = match field(key)? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => {
            return Err(CodecError::Json(format!(
                "field {key:?} is {other}, not a string or number"
            )))
        }
    };
    let x = field(value)?
        .as_f64()
        .ok_or_else(|| CodecError::Json(format!("field {value:?} is not a number")))?;
    Ok(Row { key: k, value: x })
}

#[cfg(test)]
mod tests {
    use super::super::Catalog;
    use super::*;
    use crate::error::CatalogError;

    fn spec(durable: bool) -> DeploySpec {
        DeploySpec {
            name: "a".into(),
            slo: Some(std::time::Duration::from_millis(10)),
            durable,
        }
    }

    #[test]
    fn every_builtin_kind_builds_with_its_defaults() {
        let c = Catalog::builtin();
        let params = |k: &str| {
            if k == "aggregate" {
                json!({"fn": "sum"})
            } else {
                json!({})
            }
        };
        let names: Vec<_> = c.kinds().map(|k| k.name().to_owned()).collect();
        assert_eq!(names, ["aggregate", "clicks", "sensors", "wordcount"]);
        for k in &names {
            let b = c.build(k, &spec(false), params(k)).unwrap();
            assert!(
                !b.ports.sources.is_empty() && !b.ports.sinks.is_empty(),
                "{k}"
            );
        }
    }

    #[test]
    fn bad_deploys_are_errors() {
        let c = Catalog::builtin();
        assert!(matches!(
            c.build("nope", &spec(false), json!({})),
            Err(CatalogError::UnknownKind(_))
        ));
        let e = c.build("aggregate", &spec(false), json!({"fn": "median"}));
        assert!(matches!(e, Err(CatalogError::Params(_))));
        assert!(matches!(
            c.build("sensors", &spec(true), json!({})),
            Err(CatalogError::Factory { .. })
        ));
        let mut bad = spec(false);
        bad.name = String::new();
        assert!(matches!(
            c.build("wordcount", &bad, json!({})),
            Err(CatalogError::Factory { .. })
        ));
    }
}
