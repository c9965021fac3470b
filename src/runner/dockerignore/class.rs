//! Character classes of `.dockerignore` patterns, read as Go reads them.

/// Reads one character class after its `[` with Go's `filepath.Match` rules — which
/// Docker validates patterns with — and writes it in globset's syntax. Go differs from
/// the shell: only `^` negates (`[!a]` is "`!` or `a`"), `\` escapes inside a class,
/// and an empty class or an unescaped `-` or `]` where a character is due is an error.
pub(super) fn go_class(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
) -> std::result::Result<String, String> {
    const BAD: &str = "syntax error in character class";
    let negated = chars.next_if_eq(&'^').is_some();
    let mut ranges: Vec<(char, char)> = Vec::new();
    let esc = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| match chars.next() {
        None | Some('-' | ']') => Err(BAD.to_string()),
        Some('\\') => chars.next().ok_or_else(|| BAD.to_string()),
        Some(c) => Ok(c),
    };
    loop {
        if !ranges.is_empty() && chars.next_if_eq(&']').is_some() {
            break;
        }
        let lo = esc(chars)?;
        let hi = if chars.next_if_eq(&'-').is_some() {
            esc(chars)?
        } else {
            lo
        };
        ranges.push((lo, hi));
    }
    // globset gives `!`/`^` first, `]` not first and `-` not at an end a meaning; take
    // them out of the ranges and put each where globset reads it literally.
    // Sorted by code point, for splitting ranges at them.
    const SPECIAL: [char; 4] = ['!', '-', ']', '^'];
    let mut has = [false; 4];
    let mut body = String::new();
    let push = |body: &mut String, lo: u32, hi: u32| {
        if let (Some(lo), Some(hi)) = (char::from_u32(lo), char::from_u32(hi))
            && lo <= hi
        {
            body.push_str(&format!("{lo}-{hi}"));
        }
    };
    for (lo, hi) in ranges {
        let mut start = lo as u32;
        for (k, s) in SPECIAL.iter().enumerate() {
            if (lo..=hi).contains(s) {
                has[k] = true;
                if start < *s as u32 {
                    push(&mut body, start, *s as u32 - 1);
                }
                start = *s as u32 + 1;
            }
        }
        if start <= hi as u32 {
            push(&mut body, start, hi as u32);
        }
    }
    let [bang, dash, close, caret] = has;
    let mut out = String::from(if negated { "[^" } else { "[" });
    if close {
        out.push(']');
    } else if dash {
        out.push('-');
    }
    out.push_str(&body);
    if !negated && out.len() == 1 && (bang || caret) && !dash {
        // Only `!`/`^`: a class cannot start with either without negating.
        return Ok(match (bang, caret) {
            (true, true) => "{\\!,\\^}".to_string(),
            (true, false) => "\\!".to_string(),
            _ => "\\^".to_string(),
        });
    }
    if bang {
        out.push('!');
    }
    if caret {
        out.push('^');
    }
    if close && dash {
        out.push('-');
    }
    out.push(']');
    Ok(out)
}
