//! Edits of a topology file's text that change one value in place and keep
//! everything else as written (comments, order, formatting), so that a
//! derived lab differs from its source only where asked.

use super::raw::RawTopology;
use super::{TopologyError, TopologyErrors};
use serde_saphyr::{Location, Spanned};
use std::path::Path;

/// `text` with interface `host:interface` moved to `subnet` (written as
/// topology files name subnets, `network/subnet`) at `address` (with its
/// prefix, like `10.0.1.5/24`). The result is not validated here: parse it.
///
/// Errors when the text does not parse, the interface is not in it, or its
/// subnet or address is written through a YAML alias (editing the anchor
/// would change its other uses too).
pub fn move_interface(
    text: &str,
    path: &Path,
    host: &str,
    interface: &str,
    subnet: &str,
    address: &str,
) -> Result<String, TopologyErrors> {
    let fail = |reason: String| TopologyErrors {
        errors: vec![TopologyError {
            file: path.to_path_buf(),
            line: None,
            column: None,
            path: String::new(),
            reason,
        }],
        source: text.to_string(),
    };
    let raw: RawTopology = super::parse_raw(text, path)?;
    let iface = raw
        .hosts
        .iter()
        .filter(|h| h.value.name.value == host)
        .flat_map(|h| h.value.interfaces.iter())
        .find(|i| i.value.name.value == interface)
        .ok_or_else(|| fail(format!("no interface {host}:{interface}")))?;
    let mut edits = [
        (scalar_range(text, &iface.value.subnet), subnet),
        (scalar_range(text, &iface.value.address), address),
    ];
    for (range, _) in &edits {
        if range.is_none() {
            return Err(fail(format!(
                "the subnet or address of {host}:{interface} is not a plain value in the file (an alias?)"
            )));
        }
    }
    // Replace from the end so that earlier offsets stay valid.
    edits.sort_by_key(|(range, _)| std::cmp::Reverse(range.as_ref().map(|r| r.start)));
    let mut out = text.to_string();
    for (range, value) in edits {
        let range = range.expect("checked above");
        let written = &text[range.clone()];
        let replacement = match written.chars().next() {
            Some(q @ ('"' | '\'')) => format!("{q}{value}{q}"),
            _ => value.to_string(),
        };
        out.replace_range(range, &replacement);
    }
    Ok(out)
}

/// The bytes of `text` that hold a scalar, when it is written where it is
/// used (not through an alias).
fn scalar_range(text: &str, value: &Spanned<String>) -> Option<std::ops::Range<usize>> {
    let at: Location = value.defined;
    if at != value.referenced {
        return None;
    }
    let span = at.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    let end = start.checked_add(len)?;
    text.get(start..end)?;
    Some(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
name: t   # a comment that stays
networks:
  - name: net
    cidr: 10.1.0.0/16
    subnets:
      - { name: a, cidr: 10.1.1.0/24 }
      - { name: b, cidr: 10.1.2.0/24 }
switches:
  - name: sw1
    ports: [{ name: p1 }, { name: p2 }]
hosts:
  - name: h1
    interfaces: [{ name: eth0, subnet: a, address: 10.1.1.5/24 }]
  - name: h2
    interfaces:
      - name: eth0
        subnet: \"net/b\"
        address: '10.1.2.5/24'
links:
  - [h1:eth0, sw1:p1]
  - [h2:eth0, sw1:p2]
";

    #[test]
    fn moves_one_interface_and_keeps_the_rest_as_written() {
        let path = Path::new("t.yaml");
        let moved = move_interface(TEXT, path, "h2", "eth0", "net/a", "10.1.1.6/24").unwrap();
        let expected = TEXT
            .replace("\"net/b\"", "\"net/a\"")
            .replace("'10.1.2.5/24'", "'10.1.1.6/24'");
        assert_eq!(moved, expected);
        let topology = super::super::parse(&moved, path).unwrap();
        let iface = &topology.host("h2").unwrap().interfaces[0];
        assert_eq!(
            (iface.subnet.as_str(), iface.address),
            ("a", "10.1.1.6".parse().unwrap())
        );

        let flow = move_interface(TEXT, path, "h1", "eth0", "net/b", "10.1.2.9/24").unwrap();
        assert!(flow.contains("{ name: eth0, subnet: net/b, address: 10.1.2.9/24 }"));
        super::super::parse(&flow, path).unwrap();
    }

    #[test]
    fn a_missing_interface_is_an_error() {
        let path = Path::new("t.yaml");
        let err = move_interface(TEXT, path, "h3", "eth0", "net/a", "10.1.1.6/24").unwrap_err();
        assert!(err.to_string().contains("no interface h3:eth0"), "{err}");
    }
}
