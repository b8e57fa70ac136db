//! Tabular output for people: a header row in capitals, then the rows, each
//! column as wide as its widest cell, two spaces apart, the last column
//! unpadded. Scripts read `--json` instead; the columns of a table may grow.

/// The lines of a table: `header`, then `rows`.
pub(crate) fn lines(header: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = vec![line(header.to_vec())];
    for row in rows {
        out.push(line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Prints a table (see [`lines`]).
pub(crate) fn print(header: &[&str], rows: &[Vec<String>]) {
    for l in lines(header, rows) {
        println!("{l}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_line_up_under_their_header() {
        let rows = vec![
            vec![
                "quick".to_string(),
                "Succeeded".to_string(),
                "1m ago".to_string(),
            ],
            vec![
                "a-longer-name".to_string(),
                "Failed".to_string(),
                String::new(),
            ],
        ];
        assert_eq!(
            super::lines(&["PIPELINE", "STATUS", "AGE"], &rows),
            vec![
                "PIPELINE       STATUS     AGE",
                "quick          Succeeded  1m ago",
                "a-longer-name  Failed",
            ]
        );
    }
}
