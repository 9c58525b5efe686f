//! The personal-data validators: e-mail addresses, card numbers (Luhn), phone numbers.

use super::{Finding, Kind};

/// The e-mail address around the `@` at `at`: a local part of `[A-Za-z0-9._%+-]` (1–64 bytes,
/// not starting or ending with `.`), a domain of at least two `[A-Za-z0-9-]` labels, the last
/// (the TLD) alphabetic and 2–24 letters long.
pub fn email(text: &[u8], at: usize) -> Option<Finding> {
    let local_ok = |b: &u8| b.is_ascii_alphanumeric() || b"._%+-".contains(b);
    let local = text[at.saturating_sub(64)..at].iter().rev().take_while(|b| local_ok(b)).count();
    let start = at - local;
    if local == 0 || text[start] == b'.' || text[at - 1] == b'.' {
        return None;
    }
    // Not inside a word; and `scheme://user@host` is a URL's user name, not an address (but
    // one in a path, `/users/jane@example.com`, or after `mailto:` is one).
    let before = |n: usize| start.checked_sub(n).map(|i| text[i]);
    if before(1).is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        || (before(1) == Some(b'/') && before(2) == Some(b'/'))
    {
        return None;
    }
    let domain =
        text[at + 1..].iter().take(254).take_while(|b| b.is_ascii_alphanumeric() || **b == b'-' || **b == b'.').count();
    let mut end = at + 1 + domain;
    while end > at + 1 && text[end - 1] == b'.' {
        end -= 1;
    }
    let host = &text[at + 1..end];
    let dot = host.iter().rposition(|b| *b == b'.')?;
    let tld = &host[dot + 1..];
    let labels_ok = host.split(|b| *b == b'.').all(|l| !l.is_empty() && l[0] != b'-' && l[l.len() - 1] != b'-');
    ((2..=24).contains(&tld.len()) && tld.iter().all(u8::is_ascii_alphabetic) && labels_ok)
        .then_some(Finding { kind: Kind::Email, range: start..end })
}

/// The phone number starting with the `+` at `plus`: 10–15 digits, groups separated by one
/// space, dash or dot (or a parenthesised area code), not preceded by a word character or digit
/// and not followed by another digit.
pub fn phone(text: &[u8], plus: usize) -> Option<Finding> {
    if plus > 0 && (text[plus - 1].is_ascii_alphanumeric() || matches!(text[plus - 1], b'_' | b'+' | b'.')) {
        return None;
    }
    let (mut i, mut digits, mut last_digit) = (plus + 1, 0usize, plus);
    while i < text.len() && i - plus < 32 {
        match text[i] {
            b'0'..=b'9' => {
                digits += 1;
                last_digit = i;
            }
            b' ' | b'-' | b'.' | b'(' | b')' if i == last_digit + 1 && last_digit > plus => {}
            b'(' if i == plus + 1 => {}
            _ => break,
        }
        i += 1;
    }
    let end = last_digit + 1;
    let clean_end = text.get(end).is_none_or(|b| !b.is_ascii_alphanumeric());
    ((10..=15).contains(&digits) && text.get(plus + 1).is_some_and(|b| b.is_ascii_digit() && *b != b'0') && clean_end)
        .then_some(Finding { kind: Kind::Phone, range: plus..end })
}

/// Bytes a card number is made of.
fn card_byte(b: u8) -> bool {
    b.is_ascii_digit() || b == b' ' || b == b'-'
}

/// The shortest card number, in bytes: also the probe stride, so every card number spans a probe.
const MIN_CARD: usize = 13;

/// Append every card number in `text` to `found`: probes every [`MIN_CARD`]th byte, and around
/// a probe on a digit, space or dash takes the run of such bytes and checks its parts.
pub fn cards(text: &[u8], found: &mut Vec<Finding>) {
    let mut probe = MIN_CARD - 1;
    let mut done = 0;
    while probe < text.len() {
        if !card_byte(text[probe]) || probe < done {
            probe += MIN_CARD;
            continue;
        }
        let start = probe - text[done..probe].iter().rev().take_while(|b| card_byte(**b)).count();
        let end = probe + text[probe..].iter().take_while(|b| card_byte(**b)).count();
        if end - start >= MIN_CARD {
            candidates(text, start, end, found);
        }
        done = end;
        probe = end + MIN_CARD;
    }
}

/// Split a run of digits, spaces and dashes into candidates (a double separator ends one) and
/// keep the card numbers.
fn candidates(text: &[u8], start: usize, end: usize, found: &mut Vec<Finding>) {
    let mut i = start;
    while i < end {
        while i < end && !text[i].is_ascii_digit() {
            i += 1;
        }
        let from = i;
        let mut to = i;
        while i < end
            && (text[i].is_ascii_digit()
                || (i + 1 < end && text[i + 1].is_ascii_digit() && text[i - 1].is_ascii_digit()))
        {
            if text[i].is_ascii_digit() {
                to = i + 1;
            }
            i += 1;
        }
        if to > from && card(text, from, to) {
            found.push(Finding { kind: Kind::CardNumber, range: from..to });
        }
        i = i.max(to + 1);
    }
}

/// Whether `text[from..to]` (digits and single separators, starting with a digit) is a card
/// number: 13–19 digits, the first 2–6 (the major networks' ranges), not inside a longer word
/// or number, and Luhn-valid. Cheapest checks first and no allocation: most candidates in real
/// text (timestamps, ids) fail on their first digit.
fn card(text: &[u8], from: usize, to: usize) -> bool {
    if !(b'2'..=b'6').contains(&text[from]) {
        return false;
    }
    let bounded = (from == 0
        || !(text[from - 1].is_ascii_alphanumeric() || matches!(text[from - 1], b'.' | b'_' | b'+' | b',')))
        && text.get(to).is_none_or(|b| {
            !(b.is_ascii_alphanumeric()
                || *b == b'_'
                || (*b == b'.' && text.get(to + 1).is_some_and(u8::is_ascii_digit)))
        });
    if !bounded {
        return false;
    }
    // Luhn over the digits from the right, counting them as it goes.
    let (mut n, mut sum) = (0usize, 0u32);
    for &b in text[from..to].iter().rev().filter(|b| b.is_ascii_digit()) {
        let d = u32::from(b - b'0');
        sum += if n % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d };
        n += 1;
    }
    (13..=19).contains(&n) && sum.is_multiple_of(10)
}
