use rand::Rng;

/// Shortest room code, in characters.
pub const MIN_ROOM_CODE_CHARS: usize = 3;
/// Longest room code, in characters.
pub const MAX_ROOM_CODE_CHARS: usize = 64;
/// Longest display name after trimming, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// Lower-cases (ASCII only, as the protocol says) and checks a room code.
/// Returns `None` when the code is not 3–64 of `a-z 0-9 -` or starts or ends with `-`.
pub fn normalize_room_code(code: &str) -> Option<String> {
    let code = code.to_ascii_lowercase();
    let len = code.chars().count();
    let ok = (MIN_ROOM_CODE_CHARS..=MAX_ROOM_CODE_CHARS).contains(&len)
        && code
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !code.starts_with('-')
        && !code.ends_with('-');
    ok.then_some(code)
}

/// A fresh room code of the form `xxx-xxxx-xxx`: ten random letters, about 47 bits,
/// so codes of live rooms cannot be guessed.
pub fn generate_room_code() -> String {
    let mut rng = rand::rng();
    let mut letter = || char::from(b'a' + rng.random_range(0..26u8));
    let mut code = String::with_capacity(12);
    for group in [3, 4, 3] {
        if !code.is_empty() {
            code.push('-');
        }
        for _ in 0..group {
            code.push(letter());
        }
    }
    code
}

/// Trims Unicode white space and checks a display name: 1–64 characters, no character
/// of category Cc. Returns the trimmed name the server stores and shows.
///
/// Control characters are looked for after trimming, so a name pasted with a trailing
/// newline is accepted as the name without it.
pub fn validate_name(name: &str) -> Option<String> {
    let trimmed = name.trim();
    let len = trimmed.chars().count();
    let ok = (1..=MAX_NAME_CHARS).contains(&len) && !trimmed.chars().any(char::is_control);
    ok.then(|| trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_codes_follow_the_rules() {
        assert_eq!(normalize_room_code("ABC-def").as_deref(), Some("abc-def"));
        assert_eq!(normalize_room_code("a1b").as_deref(), Some("a1b"));
        assert_eq!(normalize_room_code("ab"), None);
        assert_eq!(
            normalize_room_code(&"a".repeat(64)).map(|c| c.len()),
            Some(64)
        );
        assert_eq!(normalize_room_code(&"a".repeat(65)), None);
        assert_eq!(normalize_room_code("-abc"), None);
        assert_eq!(normalize_room_code("abc-"), None);
        assert_eq!(normalize_room_code("ab_c"), None);
        assert_eq!(normalize_room_code("abc def"), None);
        // Lower-casing is ASCII only: a non-ASCII capital stays and is refused.
        assert_eq!(normalize_room_code("abcÄ"), None);
    }

    #[test]
    fn generated_codes_have_the_documented_shape() {
        for _ in 0..100 {
            let code = generate_room_code();
            let groups: Vec<&str> = code.split('-').collect();
            assert_eq!(
                groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
                [3, 4, 3]
            );
            assert!(code.chars().all(|c| c == '-' || c.is_ascii_lowercase()));
            assert_eq!(normalize_room_code(&code).as_deref(), Some(code.as_str()));
        }
        assert_ne!(generate_room_code(), generate_room_code());
    }

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(validate_name("  Ada \u{2003}").as_deref(), Some("Ada"));
        assert_eq!(validate_name("   "), None);
        assert_eq!(validate_name(""), None);
        assert_eq!(
            validate_name(&"é".repeat(64)).map(|n| n.chars().count()),
            Some(64)
        );
        assert_eq!(validate_name(&"é".repeat(65)), None);
        assert_eq!(validate_name("A\u{7}da"), None);
        assert_eq!(validate_name("A\u{85}da"), None);
        assert_eq!(validate_name("Ada\n").as_deref(), Some("Ada"));
    }
}
