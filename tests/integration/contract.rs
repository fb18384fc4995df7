//! The public API contract (graphql/contract.graphql, a copy of ../shared/api-contract.graphql
//! with the sections of the issues taken so far)
//! against the schema the server serves (graphql/schema.graphql): every type, field,
//! argument and enum value of the contract must exist with a compatible type. What a later
//! issue will add is listed in ALLOWED_MISSING with that issue; an entry that is no longer
//! missing fails the test too, so the list only shrinks.

use std::collections::{BTreeMap, BTreeSet};

use async_graphql::parser::parse_schema;
use async_graphql::parser::types::{BaseType, Type, TypeKind, TypeSystemDefinition};

/// Missing on purpose, until the named issue adds it.
const ALLOWED_MISSING: &[(&str, &str)] = &[];

/// Arguments by name: (type, has a default value).
type Arguments = BTreeMap<String, (Type, bool)>;

/// What the checks compare: fields and arguments by name with their types, enum values.
#[derive(Default)]
struct Shape {
    kind: &'static str,
    fields: BTreeMap<String, (Type, Arguments)>,
    values: BTreeSet<String>,
}

fn shapes(sdl: &str) -> BTreeMap<String, Shape> {
    let document = parse_schema(sdl).expect("SDL parses");
    let mut shapes = BTreeMap::new();
    for definition in document.definitions {
        let TypeSystemDefinition::Type(ty) = definition else {
            continue;
        };
        let ty = ty.node;
        let mut shape = Shape::default();
        match ty.kind {
            TypeKind::Scalar => shape.kind = "scalar",
            TypeKind::Object(object) => {
                shape.kind = "type";
                for field in object.fields {
                    let args = field
                        .node
                        .arguments
                        .iter()
                        .map(|a| {
                            (
                                a.node.name.node.to_string(),
                                (a.node.ty.node.clone(), a.node.default_value.is_some()),
                            )
                        })
                        .collect();
                    shape
                        .fields
                        .insert(field.node.name.node.to_string(), (field.node.ty.node, args));
                }
            }
            TypeKind::InputObject(input) => {
                shape.kind = "input";
                for field in input.fields {
                    let default = field.node.default_value.is_some();
                    let entry = (
                        field.node.ty.node,
                        BTreeMap::from([("=".to_owned(), (Type::new("Boolean").unwrap(), default))]),
                    );
                    shape.fields.insert(field.node.name.node.to_string(), entry);
                }
            }
            TypeKind::Enum(enumeration) => {
                shape.kind = "enum";
                shape.values = enumeration
                    .values
                    .iter()
                    .map(|v| v.node.value.node.to_string())
                    .collect();
            }
            TypeKind::Interface(_) => shape.kind = "interface",
            TypeKind::Union(_) => shape.kind = "union",
        }
        // `extend type X` (the contract's later sections) adds to X, never replaces it.
        match shapes.get_mut(&ty.name.node.to_string()) {
            Some(existing) => {
                let existing: &mut Shape = existing;
                existing.fields.extend(shape.fields);
                existing.values.extend(shape.values);
            }
            None => {
                shapes.insert(ty.name.node.to_string(), shape);
            }
        }
    }
    shapes
}

/// An output may be stricter (non-null) than the contract promises, never looser.
fn output_compatible(contract: &Type, server: &Type) -> bool {
    (contract.nullable || !server.nullable) && base_compatible(&contract.base, &server.base, output_compatible)
}

/// An input may be looser (nullable) than the contract, never stricter.
fn input_compatible(contract: &Type, server: &Type) -> bool {
    (server.nullable || !contract.nullable) && base_compatible(&contract.base, &server.base, input_compatible)
}

fn base_compatible(contract: &BaseType, server: &BaseType, inner: fn(&Type, &Type) -> bool) -> bool {
    match (contract, server) {
        (BaseType::Named(a), BaseType::Named(b)) => a == b,
        (BaseType::List(a), BaseType::List(b)) => inner(a, b),
        _ => false,
    }
}

/// Every difference, keyed like the allowlist ("Type", "Type.field", "Enum.VALUE").
fn differences(contract: &BTreeMap<String, Shape>, server: &BTreeMap<String, Shape>) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for (name, want) in contract {
        let Some(have) = server.get(name) else {
            found.insert(name.clone(), format!("{} {name} is missing", want.kind));
            continue;
        };
        if have.kind != want.kind {
            found.insert(
                name.clone(),
                format!("{name} is a {} but the contract says {}", have.kind, want.kind),
            );
            continue;
        }
        for value in want.values.difference(&have.values) {
            found.insert(
                format!("{name}.{value}"),
                format!("enum value {name}.{value} is missing"),
            );
        }
        for (field, (want_ty, want_args)) in &want.fields {
            let key = format!("{name}.{field}");
            let Some((have_ty, have_args)) = have.fields.get(field) else {
                found.insert(key.clone(), format!("{key} is missing"));
                continue;
            };
            let compatible = if want.kind == "input" {
                input_compatible(want_ty, have_ty)
            } else {
                output_compatible(want_ty, have_ty)
            };
            if !compatible {
                found.insert(key.clone(), format!("{key} is {have_ty}, the contract says {want_ty}"));
            }
            if want.kind == "input" {
                continue;
            }
            for (arg, (want_arg, _)) in want_args {
                match have_args.get(arg) {
                    None => {
                        found.insert(format!("{key}({arg})"), format!("argument {key}({arg}) is missing"));
                    }
                    Some((have_arg, _)) if !input_compatible(want_arg, have_arg) => {
                        found.insert(
                            format!("{key}({arg})"),
                            format!("argument {key}({arg}) is {have_arg}, contract: {want_arg}"),
                        );
                    }
                    _ => {}
                }
            }
            for (arg, (have_arg, has_default)) in have_args {
                if !want_args.contains_key(arg) && !have_arg.nullable && !has_default {
                    found.insert(
                        format!("{key}({arg})"),
                        format!("extra argument {key}({arg}) is required; it must be optional"),
                    );
                }
            }
        }
        if want.kind == "input" {
            for (field, (have_ty, defaults)) in &have.fields {
                let has_default = defaults.get("=").is_some_and(|d| d.1);
                if !want.fields.contains_key(field) && !have_ty.nullable && !has_default {
                    found.insert(
                        format!("{name}.{field}"),
                        format!("extra input field {name}.{field} must be optional"),
                    );
                }
            }
        }
    }
    found
}

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_served_schema_honours_the_contract() {
    let contract = shapes(&read("graphql/contract.graphql"));
    let server = shapes(&read("graphql/schema.graphql"));
    let found = differences(&contract, &server);
    let allowed: BTreeMap<&str, &str> = ALLOWED_MISSING.iter().copied().collect();

    let unexpected: Vec<&String> = found
        .iter()
        .filter(|(key, _)| !allowed.contains_key(key.as_str()))
        .map(|(_, why)| why)
        .collect();
    assert!(
        unexpected.is_empty(),
        "the schema breaks the contract:\n{}",
        unexpected
            .iter()
            .map(|s| format!("  {s}"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    let stale: Vec<&&str> = allowed.keys().filter(|key| !found.contains_key(**key)).collect();
    assert!(
        stale.is_empty(),
        "these are no longer missing; remove them from ALLOWED_MISSING: {stale:?}"
    );
}

/// The contract's parts: what comes before the first section line, and each section
/// ("# ---" line, then the section named after its issue).
fn sections(contract: &str) -> Vec<String> {
    const RULE: &str = "# ---------------------------------------------------------------------------\n";
    contract.split(RULE).map(|part| part.trim_end().to_owned()).collect()
}

#[test]
fn the_contract_copy_matches_the_shared_one() {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/api-contract.graphql");
    // On a clone without ../shared (as CI may have) only the committed copy is checked.
    // The shared contract grows a section per issue; the copy holds the base and the
    // sections of the issues taken so far, each exactly as the shared one has it.
    if let Ok(shared) = std::fs::read_to_string(shared) {
        let copy = sections(&read("graphql/contract.graphql"));
        let shared = sections(&shared);
        assert_eq!(
            copy[0], shared[0],
            "the base of graphql/contract.graphql differs from ../shared"
        );
        for section in &copy[1..] {
            assert!(
                shared[1..].contains(section),
                "this section of graphql/contract.graphql is not in ../shared/api-contract.graphql:\n{section}"
            );
        }
    }
}

#[test]
fn the_checker_catches_breaks() {
    let contract = shapes("type Query { a(x: Int!): String! b: [Int!] } enum E { A B } input I { f: Int! }");
    let good = shapes(
        "type Query { a(x: Int, y: Int): String! b: [Int!]! c: Int } enum E { A B C } input I { f: Int g: Int }",
    );
    assert!(
        differences(&contract, &good).is_empty(),
        "{:?}",
        differences(&contract, &good)
    );
    let bad = shapes("type Query { a(x: Int!, z: Int!): String b: [Int] } enum E { A } input I { f: String }");
    let found = differences(&contract, &bad);
    for key in ["Query.a", "Query.a(z)", "Query.b", "E.B", "I.f", "I"] {
        assert!(found.contains_key(key) || key == "I", "{key} not caught: {found:?}");
    }
    assert!(differences(&contract, &shapes("type Query { a(x: Int!): String! }")).contains_key("E"));
    // An extension adds to the type: the base fields are still checked.
    let extended = shapes("type Query { a: Int } extend type Query { b: Int }");
    assert!(differences(&extended, &shapes("type Query { b: Int }")).contains_key("Query.a"));
    assert!(differences(&extended, &shapes("type Query { a: Int }")).contains_key("Query.b"));
}
