//! What an account may do.

use async_graphql::Enum;

/// What an account may do.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Owns clients, messages and mailings.
    User,
    /// Also sees every mailing and user, may pause mailings and block users.
    Manager,
    /// Also edits the blog and roles.
    Admin,
}

impl Role {
    pub fn from_db(role: &str) -> Role {
        match role {
            "admin" => Role::Admin,
            "manager" => Role::Manager,
            _ => Role::User,
        }
    }

    /// USER < MANAGER < ADMIN: each role can do what the ones below it can.
    pub fn rank(self) -> u8 {
        match self {
            Role::User => 0,
            Role::Manager => 1,
            Role::Admin => 2,
        }
    }

    pub fn as_db(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Manager => "manager",
            Role::Admin => "admin",
        }
    }
}
