//! How the listing commands (`images`, `history`, `ps`) word times and sizes, as
//! docker and podman print them.

/// "3 minutes ago", worded like docker's units.HumanDuration.
pub fn ago(d: chrono::TimeDelta) -> String {
    let s = d.num_seconds().max(0);
    let (m, h) = (s / 60, s / 3600);
    let text = match s {
        0 => "Less than a second".to_string(),
        1 => "1 second".to_string(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".to_string(),
        120..=3599 => format!("{m} minutes"),
        3600..=7199 => "About an hour".to_string(),
        _ if h < 48 => format!("{h} hours"),
        _ if h < 24 * 7 * 2 => format!("{} days", h / 24),
        _ if h < 24 * 30 * 3 => format!("{} weeks", h / 24 / 7),
        _ if h < 24 * 365 * 2 => format!("{} months", h / 24 / 30),
        _ => format!("{} years", h / 24 / 365),
    };
    format!("{text} ago")
}

/// Decimal units with three significant digits, as podman prints sizes.
pub fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        let digits = if v < 10.0 {
            2
        } else if v < 100.0 {
            1
        } else {
            0
        };
        format!("{v:.digits$} {}", units[i])
    }
}

/// `text` on one line, cut with `...` to `width` characters: a table's last column.
pub fn fit(text: &str, width: usize) -> String {
    let one_line = text.replace('\n', " ");
    if one_line.chars().count() <= width {
        return one_line;
    }
    let keep = width.saturating_sub(3);
    format!("{}...", one_line.chars().take(keep).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages_read_like_podman() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(4_270_000), "4.27 MB");
        assert_eq!(human_size(123_456_789), "123 MB");
        assert_eq!(ago(chrono::TimeDelta::seconds(125)), "2 minutes ago");
        assert_eq!(ago(chrono::TimeDelta::seconds(3600)), "About an hour ago");
        assert_eq!(ago(chrono::TimeDelta::seconds(0)), "Less than a second ago");
    }
}
