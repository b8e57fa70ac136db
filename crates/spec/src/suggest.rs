//! "Did you mean …?": the known name closest to a mistyped one, by edit
//! distance, for unknown keys in files and unknown names given to commands.
//!
//! A suggestion is made only when it is likely to be what was meant: the
//! distance (insertions, deletions, substitutions and swaps of neighbours,
//! ignoring case) is at most a third of the longer name, and at most 3, and
//! one candidate is closer than every other. A wrong guess costs more than
//! no guess, so ties suggest nothing.

/// The candidate closest to `word`, when one is close enough and unique.
pub fn closest<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let word_lower = word.to_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    let mut tied = false;
    for candidate in candidates {
        if candidate == word {
            continue;
        }
        let distance = edit_distance(&word_lower, &candidate.to_lowercase());
        let longer = word.chars().count().max(candidate.chars().count());
        if distance > 3 || distance * 3 > longer.max(3) {
            continue;
        }
        match best {
            Some((d, c)) if distance == d && c != candidate => tied = true,
            Some((d, _)) if distance >= d => {}
            _ => {
                best = Some((distance, candidate));
                tied = false;
            }
        }
    }
    match best {
        Some((_, candidate)) if !tied => Some(candidate),
        _ => None,
    }
}

/// ` (did you mean `X`?)` when a candidate is close to `word`, else nothing:
/// ready to put after the name in a message.
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    closest(word, candidates)
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// The optimal string alignment distance between `a` and `b`: the
/// Levenshtein distance where swapping two neighbouring characters counts
/// as one edit (`stgaes` is one edit from `stages`).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows: the one before the previous, the previous and the current.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            current[j] = d;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("stages", "stages"), 0);
        assert_eq!(edit_distance("stags", "stages"), 1);
        assert_eq!(edit_distance("stgaes", "stages"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn suggests_only_a_close_unique_name() {
        let keys = ["name", "stages", "variables", "execution_mode", "triggers"];
        assert_eq!(closest("stags", keys), Some("stages"));
        assert_eq!(closest("Stages", keys), Some("stages"));
        assert_eq!(closest("trigers", keys), Some("triggers"));
        assert_eq!(closest("varaibles", keys), Some("variables"));
        assert_eq!(closest("pipeline", keys), None);
        assert_eq!(closest("x", keys), None);
        // A tie says nothing rather than guess.
        assert_eq!(closest("ab", ["aa", "bb"]), None);
        assert_eq!(
            did_you_mean("Biuld", ["Build", "Test"]),
            " (did you mean `Build`?)"
        );
        assert_eq!(did_you_mean("Deploy", ["Build", "Test"]), "");
    }
}
