//! Typed values in the database. An enum is stored as one of the strings its column's
//! `CHECK` constraint allows: [`text_enum!`] is the one place each enum's variants meet
//! their strings, and a string that is no variant (a row written by a newer version, or by
//! hand) is a deserialisation error, never a silent default. An id is a newtype over its
//! UUID ([`id_type!`], e.g. `ClientId`), so one kind of id cannot be passed for another.
//!
//! Hand-written rather than `diesel-derive-enum`: that crate maps to PostgreSQL `ENUM`
//! types, and these columns are `text` with a `CHECK` (a new value is then one migration
//! line, never an `ALTER TYPE` that cannot run in a transaction).

/// Implements `as_db`, `FromStr` and diesel's `ToSql`/`FromSql` for `Text` on an enum that
/// derives `diesel::expression::AsExpression` and `diesel::deserialize::FromSqlRow` with `#[diesel(sql_type = Text)]`.
#[macro_export]
macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// The string stored for this value.
            pub const fn as_db(self) -> &'static str {
                match self {
                    $($ty::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_db())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, String> {
                match text {
                    $($text => Ok($ty::$variant),)+
                    other => Err(format!("{other:?} is no {}", stringify!($ty))),
                }
            }
        }

        impl diesel::serialize::ToSql<diesel::sql_types::Text, diesel::pg::Pg> for $ty {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
            ) -> diesel::serialize::Result {
                <str as diesel::serialize::ToSql<diesel::sql_types::Text, diesel::pg::Pg>>::to_sql(self.as_db(), out)
            }
        }

        impl diesel::deserialize::FromSql<diesel::sql_types::Text, diesel::pg::Pg> for $ty {
            fn from_sql(value: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
                let text = <String as diesel::deserialize::FromSql<diesel::sql_types::Text, diesel::pg::Pg>>::from_sql(value)?;
                text.parse().map_err(Into::into)
            }
        }
    };
}

/// Declares an id newtype over a UUID column: stored and bound as `uuid`, shown as the
/// UUID's text, serialised as it (events, job payloads).
#[macro_export]
macro_rules! id_type {
    ($(#[$doc:meta])* $ty:ident) => {
        $(#[$doc])*
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            PartialOrd,
            Ord,
            serde::Serialize,
            serde::Deserialize,
            diesel::expression::AsExpression,
            diesel::deserialize::FromSqlRow,
        )]
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        #[serde(transparent)]
        pub struct $ty(pub uuid::Uuid);

        impl $ty {
            pub fn new_random() -> Self {
                $ty(uuid::Uuid::new_v4())
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $ty {
            type Err = uuid::Error;

            fn from_str(text: &str) -> Result<Self, uuid::Error> {
                text.parse().map($ty)
            }
        }

        impl From<$ty> for uuid::Uuid {
            fn from(id: $ty) -> uuid::Uuid {
                id.0
            }
        }

        impl diesel::serialize::ToSql<diesel::sql_types::Uuid, diesel::pg::Pg> for $ty {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
            ) -> diesel::serialize::Result {
                <uuid::Uuid as diesel::serialize::ToSql<diesel::sql_types::Uuid, diesel::pg::Pg>>::to_sql(&self.0, out)
            }
        }

        impl diesel::deserialize::FromSql<diesel::sql_types::Uuid, diesel::pg::Pg> for $ty {
            fn from_sql(value: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
                <uuid::Uuid as diesel::deserialize::FromSql<diesel::sql_types::Uuid, diesel::pg::Pg>>::from_sql(value)
                    .map($ty)
            }
        }
    };
}

id_type!(
    /// An account.
    UserId
);
id_type!(
    /// A client (a person a user mails).
    ClientId
);
id_type!(
    /// A user's label for clients.
    TagId
);
id_type!(
    /// An upload of clients being imported.
    ImportJobId
);
id_type!(
    /// A message (subject and body).
    MessageId
);
id_type!(
    /// A layout (HTML around messages).
    LayoutId
);
id_type!(
    /// A mailing.
    MailingId
);
id_type!(
    /// One run (occurrence) of a mailing.
    RunId
);
id_type!(
    /// One message to one client for one run.
    DeliveryId
);
id_type!(
    /// One try to hand a delivery to the mail server.
    AttemptId
);
id_type!(
    /// An address a user no longer mails.
    SuppressionId
);
id_type!(
    /// A bounce or complaint about a delivery.
    BounceId
);
id_type!(
    /// A mail server deliveries may go through.
    SmtpServerId
);
id_type!(
    /// Who a mailing's mail comes from.
    SenderIdentityId
);
id_type!(
    /// A blog post.
    PostId
);
id_type!(
    /// A sign-in session.
    SessionId
);
id_type!(
    /// An API key.
    ApiKeyId
);

#[cfg(test)]
mod tests {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)]
    #[diesel(sql_type = diesel::sql_types::Text)]
    enum Colour {
        Red,
        DarkBlue,
    }
    crate::text_enum!(Colour { Red => "red", DarkBlue => "dark_blue" });

    #[test]
    fn every_value_round_trips_and_an_unknown_one_is_an_error() {
        for colour in [Colour::Red, Colour::DarkBlue] {
            assert_eq!(colour.as_db().parse::<Colour>(), Ok(colour));
        }
        assert_eq!(Colour::DarkBlue.as_db(), "dark_blue");
        assert_eq!("green".parse::<Colour>(), Err("\"green\" is no Colour".to_owned()));
        assert!("".parse::<Colour>().is_err());
    }
}
