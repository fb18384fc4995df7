//! Segments: conditions on a client's built-in fields and attributes, all or any of them,
//! compiled to one SQL filter on `clients`. Conditions are data: every field name is
//! checked against the known fields (an attribute key against the key rules) and every
//! value is a bound parameter, so nothing a user types is spliced into a query.
//!
//! EQ and NE compare text (e-mail without regard to case); CONTAINS is a case-insensitive
//! substring; EXISTS holds when the attribute is set (a built-in field: not empty); GT and
//! LT compare numbers when the value is a number (an attribute that is a number, or a
//! string written as one, as CSV imports store them), and dates (`YYYY-MM-DD`, or a full
//! RFC 3339 time for `createdAt`) when it is a date. An attribute of another kind never
//! matches GT or LT (no error per row).

use chrono::{DateTime, NaiveDate, Utc};
use diesel::dsl::sql;
use diesel::expression::BoxableExpression;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};

use crate::db::schema::clients;
use crate::db::{like_literal, like_pattern};
use crate::error::{AppError, AppResult};
use crate::validate;

/// Conditions one segment may hold.
pub const MAX_CONDITIONS: usize = 20;
/// Longest value a condition compares with.
const MAX_VALUE: usize = 500;

#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SegmentMatch {
    /// Every condition holds.
    All,
    /// At least one holds.
    Any,
}

#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SegmentOp {
    Eq,
    Ne,
    Contains,
    Exists,
    Gt,
    Lt,
}

/// What a condition looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Email,
    FullName,
    Comment,
    CreatedAt,
    Attribute(String),
}

impl Field {
    /// `email`, `fullName`, `comment`, `createdAt` or `attributes.<key>`.
    pub fn parse(field: &str, name: &str) -> AppResult<Field> {
        Ok(match name {
            "email" => Field::Email,
            "fullName" => Field::FullName,
            "comment" => Field::Comment,
            "createdAt" => Field::CreatedAt,
            other => match other.strip_prefix("attributes.") {
                Some(key) => {
                    validate::attribute_key(field, key)?;
                    Field::Attribute(key.to_owned())
                }
                None => {
                    return Err(AppError::bad_input(
                        field,
                        "a field is email, fullName, comment, createdAt or attributes.<key>",
                    ));
                }
            },
        })
    }
}

/// One checked condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: Field,
    pub op: SegmentOp,
    pub value: Value,
}

/// A condition's value, read for its operator.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Text(String),
    Number(String),
    Date(String),
    Time(DateTime<Utc>),
}

/// A checked segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub matching: SegmentMatch,
    pub conditions: Vec<Condition>,
}

/// Checks a condition given as (field name, operator, value); errors name `prefix.field`
/// or `prefix.value`.
pub fn condition(prefix: &str, field: &str, op: SegmentOp, value: Option<&str>) -> AppResult<Condition> {
    let field = Field::parse(&format!("{prefix}.field"), field)?;
    let value_field = format!("{prefix}.value");
    let value = match (op, value.map(str::trim)) {
        (SegmentOp::Exists, _) => Value::None,
        (_, None) => return Err(AppError::bad_input(value_field, "this operator compares with a value")),
        (_, Some(text)) if text.chars().count() > MAX_VALUE => {
            return Err(AppError::bad_input(
                value_field,
                format!("at most {MAX_VALUE} characters"),
            ));
        }
        (SegmentOp::Gt | SegmentOp::Lt, Some(text)) => {
            if field == Field::CreatedAt {
                match DateTime::parse_from_rfc3339(text) {
                    Ok(time) => Value::Time(time.with_timezone(&Utc)),
                    Err(_) => match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
                        Ok(day) => Value::Time(day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()),
                        Err(_) => {
                            return Err(AppError::bad_input(
                                value_field,
                                "a date (YYYY-MM-DD) or an RFC 3339 time",
                            ));
                        }
                    },
                }
            } else if text.parse::<f64>().is_ok_and(f64::is_finite) && !text.contains(['e', 'E', 'i', 'n', 'N']) {
                Value::Number(text.to_owned())
            } else if NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok() {
                Value::Date(text.to_owned())
            } else {
                return Err(AppError::bad_input(
                    value_field,
                    "GT and LT compare with a number or a date (YYYY-MM-DD)",
                ));
            }
        }
        (_, Some(text)) => validate::line(&value_field, text, MAX_VALUE).map(Value::Text)?,
    };
    if field == Field::CreatedAt && matches!(op, SegmentOp::Eq | SegmentOp::Ne | SegmentOp::Contains) {
        return Err(AppError::bad_input(
            format!("{prefix}.op"),
            "createdAt is compared with GT, LT or EXISTS",
        ));
    }
    Ok(Condition { field, op, value })
}

/// A condition on `clients`, boxed so that parts can be combined at run time.
pub type Filter = Box<dyn BoxableExpression<clients::table, Pg, SqlType = Bool>>;

/// `attributes ->> key <op> value`, both bound.
fn attribute_text(key: String, op: &str, value: String) -> Filter {
    Box::new(
        sql::<Bool>("((clients.attributes ->> ")
            .bind::<Text, _>(key)
            .sql(op)
            .bind::<Text, _>(value)
            .sql(")"),
    )
}

/// The SQL of one condition.
fn filter(condition: &Condition) -> Filter {
    use SegmentOp::*;
    let text = |value: &Value| match value {
        Value::Text(text) | Value::Number(text) | Value::Date(text) => text.clone(),
        Value::Time(time) => time.to_rfc3339(),
        Value::None => String::new(),
    };
    match &condition.field {
        Field::Email | Field::FullName | Field::Comment => {
            let column: Box<dyn BoxableExpression<clients::table, Pg, SqlType = Text>> = match condition.field {
                Field::Email => Box::new(clients::email),
                Field::FullName => Box::new(clients::full_name),
                _ => Box::new(clients::comment),
            };
            let value = text(&condition.value);
            match (condition.op, &condition.field) {
                (Eq, Field::Email) => Box::new(column.ilike(like_literal(&value))),
                (Ne, Field::Email) => Box::new(column.not_ilike(like_literal(&value))),
                (Eq, _) => Box::new(column.eq(value)),
                (Ne, _) => Box::new(column.ne(value)),
                (Contains, _) => Box::new(column.ilike(like_pattern(&value))),
                (Exists, _) => Box::new(column.ne("")),
                (Gt, _) => Box::new(column.gt(value)),
                (Lt, _) => Box::new(column.lt(value)),
            }
        }
        Field::CreatedAt => match (&condition.value, condition.op) {
            (Value::Time(time), Gt) => Box::new(clients::created_at.gt(*time)),
            (Value::Time(time), Lt) => Box::new(clients::created_at.lt(*time)),
            _ => Box::new(sql::<Bool>("true")),
        },
        Field::Attribute(key) => {
            let key = key.clone();
            let value = text(&condition.value);
            match (condition.op, &condition.value) {
                (Exists, _) => Box::new(sql::<Bool>("(clients.attributes ? ").bind::<Text, _>(key).sql(")")),
                (Eq, _) => {
                    // Containment, so that the attributes' GIN index answers it: the value as a
                    // string, and as the number or boolean it may also be stored as.
                    let mut candidates = vec![serde_json::json!({ key.clone(): value.clone() })];
                    if let Ok(number) = value.parse::<serde_json::Number>() {
                        candidates.push(serde_json::json!({ key.clone(): number }));
                    } else if let Ok(boolean) = value.parse::<bool>() {
                        candidates.push(serde_json::json!({ key.clone(): boolean }));
                    }
                    candidates
                        .into_iter()
                        .map(|json| -> Filter {
                            Box::new(
                                sql::<Bool>("(clients.attributes @> ")
                                    .bind::<diesel::sql_types::Jsonb, _>(json)
                                    .sql(")"),
                            )
                        })
                        .reduce(|either, or| Box::new(either.or(or)))
                        .expect("at least the text candidate")
                }
                (Ne, _) => attribute_text(key, ") IS DISTINCT FROM ", value),
                (Contains, _) => attribute_text(key, ") ILIKE ", like_pattern(&value)),
                (Gt | Lt, Value::Number(_)) => {
                    let op = if condition.op == Gt { " > " } else { " < " };
                    Box::new(
                        sql::<Bool>("(CASE WHEN jsonb_typeof(clients.attributes -> ")
                            .bind::<Text, _>(key.clone())
                            .sql(") = 'number' OR (clients.attributes ->> ")
                            .bind::<Text, _>(key.clone())
                            .sql(") ~ '^-?[0-9]{1,30}(\\.[0-9]{1,30})?$' THEN (clients.attributes ->> ")
                            .bind::<Text, _>(key)
                            .sql(")::numeric")
                            .sql(op)
                            .bind::<Text, _>(value)
                            .sql("::numeric ELSE false END)"),
                    )
                }
                (Gt | Lt, _) => {
                    // Dates as ISO text compare as dates; anything else that is no date fails.
                    let op = if condition.op == Gt { " > " } else { " < " };
                    Box::new(
                        sql::<Bool>("(CASE WHEN (clients.attributes ->> ")
                            .bind::<Text, _>(key.clone())
                            .sql(") ~ '^\\d{4}-\\d{2}-\\d{2}' THEN left(clients.attributes ->> ")
                            .bind::<Text, _>(key)
                            .sql(", 10)")
                            .sql(op)
                            .bind::<Text, _>(value)
                            .sql(" ELSE false END)"),
                    )
                }
            }
        }
    }
}

/// The whole segment as one filter on `clients` (the caller scopes it to the owner).
pub fn compile(segment: &Segment) -> Filter {
    let mut filters = segment.conditions.iter().map(filter);
    let Some(first) = filters.next() else {
        return Box::new(sql::<Bool>("true"));
    };
    filters.fold(first, |all, next| match segment.matching {
        SegmentMatch::All => Box::new(all.and(next)),
        SegmentMatch::Any => Box::new(all.or(next)),
    })
}

#[derive(
    async_graphql::InputObject, async_graphql::SimpleObject, Debug, Clone, serde::Serialize, serde::Deserialize,
)]
#[graphql(name = "SegmentCondition", input_name = "SegmentConditionInput")]
pub struct SegmentConditionInput {
    /// `email`, `fullName`, `comment`, `createdAt` or `attributes.<key>`.
    pub field: String,
    pub op: SegmentOp,
    /// Absent for EXISTS.
    pub value: Option<String>,
}

/// A segment as the user gave it: also how a mailing stores it (JSON) and shows it.
#[derive(
    async_graphql::InputObject, async_graphql::SimpleObject, Debug, Clone, serde::Serialize, serde::Deserialize,
)]
#[graphql(name = "Segment", input_name = "SegmentInput")]
pub struct SegmentInput {
    #[graphql(name = "match")]
    #[serde(rename = "match")]
    pub matching: SegmentMatch,
    pub conditions: Vec<SegmentConditionInput>,
}

impl SegmentInput {
    /// The checked segment; errors name `field.conditions.N.field` (or `.value`, `.op`).
    pub fn validate(&self, field: &str) -> AppResult<Segment> {
        if self.conditions.is_empty() || self.conditions.len() > MAX_CONDITIONS {
            return Err(AppError::bad_input(
                format!("{field}.conditions"),
                format!("1 to {MAX_CONDITIONS} conditions"),
            ));
        }
        let conditions = self
            .conditions
            .iter()
            .enumerate()
            .map(|(i, c)| condition(&format!("{field}.conditions.{i}"), &c.field, c.op, c.value.as_deref()))
            .collect::<AppResult<_>>()?;
        Ok(Segment {
            matching: self.matching,
            conditions,
        })
    }
}
