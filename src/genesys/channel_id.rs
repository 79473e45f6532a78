//! Channel ids are credentials: a channel's connectUri needs no token, so
//! whoever reads an id could connect and take the bridge's events. This
//! file is how an id is shown anywhere outside the connection that holds
//! it (logs, errors, `/status`, gap records).

/// How a channel is shown in logs and on /status. Its first 16
/// characters (for `streaming-0-…` ids, the prefix and four random ones)
/// tell channels apart; no id format is assumed beyond that, so an id with
/// more hyphens does not show more of itself.
pub fn channel_label(id: &str) -> String {
    const SHOWN: usize = 16;
    const SHOWN_OF_SHORT: usize = 4;
    let shown = if id.chars().count() > SHOWN + 8 {
        SHOWN
    } else {
        SHOWN_OF_SHORT
    };
    format!("{}…", id.chars().take(shown).collect::<String>())
}

/// `text` (a service's error message, say) with every channel id in it
/// shortened as [`channel_label`] does.
pub fn mask_channel_ids(text: &str) -> String {
    const MARK: &str = "streaming-";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        let id_len = rest[at..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(rest.len() - at);
        out.push_str(&channel_label(&rest[at..at + id_len]));
        rest = &rest[at + id_len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_ids_are_shortened() {
        assert_eq!(
            channel_label("streaming-0-fmtdmf8cdis7jh14udg5p89t6z"),
            "streaming-0-fmtd…"
        );
        assert_eq!(channel_label("abcdefgh"), "abcd…");
        assert_eq!(
            channel_label("streaming-0-1234-5678-9abc-def0-123456789abc"),
            "streaming-0-1234…"
        );
    }

    #[test]
    fn channel_ids_in_messages_are_masked() {
        assert_eq!(
            mask_channel_ids(
                "channel streaming-0-fmtdmf8cdis7jh14udg5p89t6z not found; see streaming-1-abcdefghijklmnopqrstu."
            ),
            "channel streaming-0-fmtd… not found; see streaming-1-abcd…."
        );
        assert_eq!(mask_channel_ids("no id here"), "no id here");
    }
}
