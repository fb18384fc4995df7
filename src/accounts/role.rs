//! What an account may do.

use async_graphql::Enum;

/// What an account may do.
#[derive(
    Enum, Copy, Clone, Debug, PartialEq, Eq, diesel::expression::AsExpression, diesel::deserialize::FromSqlRow,
)]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum Role {
    /// Owns clients, messages and mailings.
    User,
    /// Also sees every mailing and user, may pause mailings and block users.
    Manager,
    /// Also edits the blog and roles.
    Admin,
}

crate::text_enum!(Role { User => "user", Manager => "manager", Admin => "admin" });

impl Role {
    /// USER < MANAGER < ADMIN: each role can do what the ones below it can.
    pub fn rank(self) -> u8 {
        match self {
            Role::User => 0,
            Role::Manager => 1,
            Role::Admin => 2,
        }
    }
}
