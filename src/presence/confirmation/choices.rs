//! The buttons of a confirmation prompt: distinct two-digit numbers from 10
//! to 99 (easy to say over the phone, no leading zero to mishear), drawn
//! and ordered with the OS CSPRNG, with the correct one picked the same way.

use crate::infra::ids::fill_random;

/// Fewest and most choices a prompt may have.
pub const MIN_CHOICES: usize = 2;
pub const MAX_CHOICES: usize = 9;
/// Choices when the agent names no number.
pub const DEFAULT_CHOICES: usize = 3;

/// A uniform number below `bound` (rejection sampling, so none is likelier).
fn below(bound: u32) -> u32 {
    let limit = u32::MAX - u32::MAX % bound;
    loop {
        let mut bytes = [0u8; 4];
        fill_random(&mut bytes);
        let n = u32::from_le_bytes(bytes);
        if n < limit {
            return n % bound;
        }
    }
}

/// `count` distinct choices (clamped by the caller to
/// [`MIN_CHOICES`]..=[`MAX_CHOICES`]) and the index of the correct one.
pub fn draw(count: usize) -> (Vec<String>, usize) {
    let mut choices: Vec<String> = Vec::with_capacity(count);
    while choices.len() < count {
        let candidate = (10 + below(90)).to_string();
        if !choices.contains(&candidate) {
            choices.push(candidate);
        }
    }
    // Drawn without order, so the list order says nothing about the answer.
    let answer = below(count as u32) as usize;
    (choices, answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_are_distinct_two_digit_numbers() {
        for count in MIN_CHOICES..=MAX_CHOICES {
            let (choices, answer) = draw(count);
            assert_eq!(choices.len(), count);
            assert!(answer < count);
            let mut sorted = choices.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), count, "{choices:?}");
            for c in &choices {
                let n: u32 = c.parse().expect("number");
                assert!((10..=99).contains(&n), "{c}");
            }
        }
    }

    #[test]
    fn every_position_can_be_the_answer() {
        let mut seen = [false; 3];
        for _ in 0..500 {
            seen[draw(3).1] = true;
        }
        assert_eq!(seen, [true; 3]);
    }
}
