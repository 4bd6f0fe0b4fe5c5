//! Reading `meshcall join --report` files.
#![allow(dead_code)]

use serde_json::Value;

/// The report's entry for the peer called `name`; panics, showing the report, without one.
pub fn peer<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["peers"]
        .as_object()
        .unwrap()
        .values()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no peer {name} in {report:#}"))
}

/// A count from the report; panics when it is missing or not a number.
pub fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}
