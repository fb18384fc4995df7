//! Which answers are bounces, from the status codes of RFC 3463 (`class.subject.detail`)
//! and, where a server gives none, the reply code and the words servers use. A failure
//! that is the message's or the sender's (too large, spam or policy blocks, our own
//! refusals) is no bounce: it says nothing about the address.

use super::bounces::BounceKind;

/// The enhanced status code in a reply or report ("550 5.1.1 no such user" -> (5, 1, 1)).
pub fn enhanced_code(text: &str) -> Option<(u8, u16, u16)> {
    text.split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ';' | ',' | '#' | '<' | '>' | '[' | ']'))
        .find_map(|word| {
            // A line of a multi-line reply: "550-5.1.1".
            let word = match word.as_bytes() {
                [a, b, c, b'-', ..] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => &word[4..],
                _ => word,
            };
            let mut parts = word.trim_end_matches(['.', ':']).split('.');
            let class: u8 = parts.next()?.parse().ok()?;
            let subject: u16 = parts.next()?.parse().ok()?;
            let detail: u16 = parts.next()?.parse().ok()?;
            (parts.next().is_none() && matches!(class, 2 | 4 | 5) && subject < 1000 && detail < 1000)
                .then_some((class, subject, detail))
        })
}

/// What a status code says about the address: 5.1.x (addressing: no such user, bad
/// domain; 5.1.7 and 5.1.8 are the sender's) and 5.2.1 (mailbox disabled) are HARD; 5.2.2
/// (mailbox full) and every 4.x.x are SOFT; the rest (message too large, policy,
/// protocol) none.
pub fn of_status(class: u8, subject: u16, detail: u16) -> Option<BounceKind> {
    match (class, subject, detail) {
        (5, 1, 7 | 8) => None,
        (5, 1, _) | (5, 2, 1) => Some(BounceKind::Hard),
        (5, 2, 2) | (4, _, _) => Some(BounceKind::Soft),
        _ => None,
    }
}

/// Words by which servers without enhanced codes say the address does not exist.
const NO_SUCH_USER: &[&str] = &[
    "no such user",
    "user unknown",
    "unknown user",
    "user not found",
    "no such mailbox",
    "mailbox not found",
    "mailbox unavailable",
    "recipient unknown",
    "unknown recipient",
    "invalid recipient",
    "recipient address rejected",
    "does not exist",
    "account disabled",
    "account has been disabled",
    "no mailbox here",
];

/// A permanent failure of our own exchange: HARD when the code or the words say the address
/// is bad; none otherwise. `at_recipient`: the server refused the RCPT (not the message).
pub fn of_rejection(reply: &str, at_recipient: bool) -> Option<BounceKind> {
    if let Some((class, subject, detail)) = enhanced_code(reply) {
        return of_status(class, subject, detail).filter(|kind| *kind == BounceKind::Hard || class == 5);
    }
    let code = reply
        .get(..3)
        .filter(|c| c.starts_with('5') && c.bytes().all(|b| b.is_ascii_digit()))?;
    let lower = reply.to_ascii_lowercase();
    let says_no_user = NO_SUCH_USER.iter().any(|words| lower.contains(words));
    ((at_recipient && matches!(code, "550" | "551" | "553")) || says_no_user).then_some(BounceKind::Hard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_are_read_from_replies_and_reports() {
        assert_eq!(enhanced_code("550 5.1.1 <a@b>: no such user"), Some((5, 1, 1)));
        assert_eq!(enhanced_code("550-5.1.1 The account does not exist"), Some((5, 1, 1)));
        assert_eq!(
            enhanced_code("550 5.1.10 RESOLVER.ADR.RecipientNotFound"),
            Some((5, 1, 10))
        );
        assert_eq!(enhanced_code("smtp; 552 5.2.2 over quota"), Some((5, 2, 2)));
        assert_eq!(enhanced_code("Status: 4.4.1"), Some((4, 4, 1)));
        assert_eq!(enhanced_code("550 requested action not taken"), None);
        assert_eq!(enhanced_code("version 1.2.3.4"), None);
        assert_eq!(enhanced_code("9.9.9"), None);
    }

    #[test]
    fn addresses_bounce_messages_and_policies_do_not() {
        let hard = Some(BounceKind::Hard);
        assert_eq!(of_rejection("550 5.1.1 no such user", true), hard);
        assert_eq!(of_rejection("550 5.1.10 recipient not found", false), hard);
        assert_eq!(of_rejection("550 5.2.1 mailbox disabled", true), hard);
        assert_eq!(of_rejection("552 5.2.2 mailbox full", true), Some(BounceKind::Soft));
        assert_eq!(of_rejection("550 5.7.1 message rejected as spam", true), None);
        assert_eq!(of_rejection("552 5.3.4 message too big", false), None);
        assert_eq!(of_rejection("553 5.1.8 bad sender", true), None);
        assert_eq!(of_rejection("550 no such user here", false), hard);
        assert_eq!(
            of_rejection("550 go away", true),
            hard,
            "a bare 550 to RCPT is about the address"
        );
        assert_eq!(of_rejection("554 transaction failed", true), None);
        assert_eq!(
            of_rejection("553 Sender address rejected: not owned", false),
            None,
            "ours, not the address's"
        );
        assert_eq!(
            of_rejection("550 go away", false),
            None,
            "after DATA it may be the message"
        );
        assert_eq!(
            of_rejection("the message is 9 bytes; the server takes at most 1 (SIZE)", true),
            None
        );
        assert_eq!(of_status(4, 2, 2), Some(BounceKind::Soft));
    }
}
