//! `RUN --mount=...` values: one CSV line of `key=value` fields (and the bare
//! booleans `ro`, `rw`, `required`) to a typed [`RunMount`], with BuildKit's
//! names, synonyms, defaults and refusals. Values are expanded by the caller's
//! expander field by field; `from` never is, as in BuildKit, so the plan can tell
//! which stages a RUN needs before any variable has a value.

use std::fmt;

/// What a RUN mount provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountKind {
    pub fn name(self) -> &'static str {
        match self {
            MountKind::Bind => "bind",
            MountKind::Cache => "cache",
            MountKind::Tmpfs => "tmpfs",
            MountKind::Secret => "secret",
            MountKind::Ssh => "ssh",
        }
    }
}

/// How concurrent builds share one cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharing {
    #[default]
    Shared,
    Private,
    Locked,
}

/// One `--mount` as written, options typed, nothing resolved yet (an empty
/// string is an option not given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMount {
    pub kind: MountKind,
    pub target: String,
    pub source: String,
    pub from: String,
    pub read_only: bool,
    pub id: String,
    pub sharing: Sharing,
    pub required: bool,
    /// tmpfs: its size limit in bytes.
    pub size: Option<u64>,
    /// secret: the environment variable that receives the value.
    pub env: Option<String>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// A `--mount` value that cannot be used, with BuildKit's wording where it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountError(pub String);

impl fmt::Display for MountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MountError {}

fn err<T>(text: impl Into<String>) -> Result<T, MountError> {
    Err(MountError(text.into()))
}

/// The `from=` of a `--mount` value, unexpanded (None without one), for working
/// out which stages a RUN depends on. A value that is not valid CSV has none.
pub fn mount_from(value: &str) -> Option<String> {
    let fields = csv_fields(value).ok()?;
    fields.iter().rev().find_map(|f| {
        let (k, v) = f.split_once('=')?;
        k.eq_ignore_ascii_case("from").then(|| v.to_string())
    })
}

/// Parses one `--mount` value, expanding every value but `from` with `expand`.
pub fn parse_mount(value: &str, expand: &dyn Fn(&str) -> Result<String, String>) -> Result<RunMount, MountError> {
    let fields = csv_fields(value).map_err(|e| MountError(format!("failed to parse csv mounts: {e}")))?;
    let mut m = RunMount {
        kind: MountKind::Bind,
        target: String::new(),
        source: String::new(),
        from: String::new(),
        read_only: true,
        id: String::new(),
        sharing: Sharing::Shared,
        required: false,
        size: None,
        env: None,
        mode: None,
        uid: None,
        gid: None,
    };
    let mut sharing_set = false;
    let mut ro_given = false;
    for field in &fields {
        let Some((key, raw)) = field.split_once('=') else {
            bare_flag(&mut m, &field.to_ascii_lowercase(), field, &mut ro_given)?;
            continue;
        };
        let key = key.to_ascii_lowercase();
        if key == "from" {
            if raw.find('$').is_some_and(|i| i + 1 != raw.len()) {
                return err("'from' doesn't support variable expansion, define alias stage instead");
            }
            m.from = raw.to_string();
            continue;
        }
        let value = expand(raw).map_err(MountError)?;
        keyed_field(&mut m, &key, &value, field, &mut ro_given, &mut sharing_set)?;
    }
    if !ro_given {
        m.read_only = !matches!(m.kind, MountKind::Cache | MountKind::Tmpfs);
    }
    check(&m, sharing_set)?;
    Ok(m)
}

fn bare_flag(m: &mut RunMount, key: &str, field: &str, ro_given: &mut bool) -> Result<(), MountError> {
    match key {
        "readonly" | "ro" => m.read_only = true,
        "readwrite" | "rw" => m.read_only = false,
        "required" if matches!(m.kind, MountKind::Secret | MountKind::Ssh) => {
            m.required = true;
            return Ok(());
        }
        "required" => return err(format!("unexpected key 'required' for mount type '{}'", m.kind.name())),
        _ => return err(format!("invalid field '{field}' must be a key=value pair")),
    }
    *ro_given = true;
    Ok(())
}

fn keyed_field(
    m: &mut RunMount,
    key: &str,
    value: &str,
    field: &str,
    ro_given: &mut bool,
    sharing_set: &mut bool,
) -> Result<(), MountError> {
    let invalid = || MountError(format!("invalid value for {key}: {value}"));
    match key {
        "type" => m.kind = mount_kind(value)?,
        "source" | "src" => m.source = value.to_string(),
        "target" | "dst" | "destination" => m.target = value.to_string(),
        "readonly" | "ro" => {
            m.read_only = parse_bool(value).ok_or_else(invalid)?;
            *ro_given = true;
        }
        "readwrite" | "rw" => {
            m.read_only = !parse_bool(value).ok_or_else(invalid)?;
            *ro_given = true;
        }
        "required" if matches!(m.kind, MountKind::Secret | MountKind::Ssh) => m.required = parse_bool(value).ok_or_else(invalid)?,
        "size" if m.kind == MountKind::Tmpfs => m.size = Some(ram_in_bytes(value).ok_or_else(invalid)?),
        "required" | "size" => return err(format!("unexpected key '{key}' for mount type '{}'", m.kind.name())),
        "id" => m.id = value.to_string(),
        "sharing" => {
            m.sharing = match value.to_ascii_lowercase().as_str() {
                "shared" => Sharing::Shared,
                "private" => Sharing::Private,
                "locked" => Sharing::Locked,
                _ => return err(format!("unsupported sharing value \"{value}\": expected shared, private or locked")),
            };
            *sharing_set = true;
        }
        "mode" => m.mode = Some(u32::from_str_radix(value, 8).map_err(|_| MountError(format!("invalid value {value} for mode")))?),
        "uid" => m.uid = Some(value.parse().map_err(|_| MountError(format!("invalid value {value} for uid")))?),
        "gid" => m.gid = Some(value.parse().map_err(|_| MountError(format!("invalid value {value} for gid")))?),
        "env" => m.env = Some(value.to_string()),
        _ => return err(format!("unexpected key '{key}' in '{field}'")),
    }
    Ok(())
}

fn mount_kind(value: &str) -> Result<MountKind, MountError> {
    Ok(match value.to_ascii_lowercase().as_str() {
        "bind" => MountKind::Bind,
        "cache" => MountKind::Cache,
        "tmpfs" => MountKind::Tmpfs,
        "secret" => MountKind::Secret,
        "ssh" => MountKind::Ssh,
        _ => return err(format!("unsupported mount type \"{value}\": expected bind, cache, tmpfs, secret or ssh")),
    })
}

/// The combinations BuildKit refuses once every field is read.
fn check(m: &RunMount, sharing_set: bool) -> Result<(), MountError> {
    let file_info = matches!(m.kind, MountKind::Secret | MountKind::Ssh | MountKind::Cache);
    if !file_info {
        for (name, given) in [("mode", m.mode.is_some()), ("uid", m.uid.is_some()), ("gid", m.gid.is_some())] {
            if given {
                return err(format!("{name} not allowed for \"{}\" type mounts", m.kind.name()));
            }
        }
    }
    if m.kind == MountKind::Secret {
        if !m.from.is_empty() {
            return err("secret mount should not have a from");
        }
        if m.source.is_empty() && m.target.is_empty() && m.id.is_empty() {
            return err("invalid secret mount. one of source, target required");
        }
        if !m.source.is_empty() && !m.id.is_empty() {
            return err("both source and id can't be set");
        }
    }
    if m.kind == MountKind::Ssh && !m.source.is_empty() {
        return err("ssh does not support source");
    }
    if sharing_set && m.kind != MountKind::Cache {
        return err(format!("invalid cache sharing set for {} mount", m.kind.name()));
    }
    if m.env.is_some() && m.kind != MountKind::Secret {
        return err(format!("unexpected key 'env' for mount type '{}'", m.kind.name()));
    }
    if m.target.is_empty() && !matches!(m.kind, MountKind::Secret | MountKind::Ssh) {
        return err(format!("{} mount needs a target", m.kind.name()));
    }
    Ok(())
}

/// Go's strconv.ParseBool.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// docker/go-units RAMInBytes: a number with an optional binary unit
/// (`64m`, `1.5g`, `512KiB`), case-insensitive.
fn ram_in_bytes(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let num: f64 = num.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.strip_suffix("ib").or_else(|| unit.strip_suffix('b')).unwrap_or(&unit);
    let scale: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0f64.powi(4),
        "p" => 1024.0f64.powi(5),
        _ => return None,
    };
    (num >= 0.0).then_some((num * scale) as u64)
}

/// Splits one CSV record (RFC 4180: `"` quotes a field, `""` inside is a quote).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("extraneous or missing \" in quoted-field".into()),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {}
                Some(_) => return Err("extraneous or missing \" in quoted-field".into()),
            }
        } else {
            loop {
                match chars.next() {
                    Some(',') => break,
                    Some('"') => return Err("bare \" in non-quoted-field".into()),
                    Some(c) => field.push(c),
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                }
            }
        }
        fields.push(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Result<RunMount, MountError> {
        parse_mount(v, &|s| Ok(s.replace("$DIR", "/expanded")))
    }

    #[test]
    fn defaults_follow_the_type() {
        let b = parse("target=/src").unwrap();
        assert_eq!((b.kind, b.read_only), (MountKind::Bind, true));
        let c = parse("type=cache,target=/root/.cache").unwrap();
        assert_eq!((c.kind, c.read_only, c.sharing), (MountKind::Cache, false, Sharing::Shared));
        let t = parse("type=tmpfs,dst=/t,size=64m").unwrap();
        assert_eq!((t.read_only, t.size), (false, Some(64 << 20)));
        let s = parse("type=secret,id=tok,required").unwrap();
        assert!(s.required && s.read_only && s.target.is_empty());
        let rw = parse("type=bind,from=build,source=/out,target=/mnt,rw").unwrap();
        assert_eq!((rw.from.as_str(), rw.source.as_str(), rw.read_only), ("build", "/out", false));
    }

    #[test]
    fn values_expand_but_from_does_not() {
        assert_eq!(parse("type=cache,target=$DIR/pip").unwrap().target, "/expanded/pip");
        assert!(parse("from=$STAGE,target=/x").unwrap_err().0.contains("doesn't support variable expansion"));
        assert_eq!(mount_from("type=bind,FROM=base,target=/x").as_deref(), Some("base"));
        assert_eq!(mount_from("type=cache,target=/x"), None);
    }

    #[test]
    fn options_are_typed_and_checked() {
        let c = parse("type=cache,id=x,target=/c,sharing=LOCKED,mode=0700,uid=1000,gid=1000,ro=false").unwrap();
        assert_eq!((c.sharing, c.mode, c.uid, c.gid, c.read_only), (Sharing::Locked, Some(0o700), Some(1000), Some(1000), false));
        for bad in [
            "type=volume,target=/x",
            "type=bind,target=/x,mode=0700",
            "type=tmpfs,target=/x,sharing=locked",
            "type=cache,target=/x,required",
            "type=bind,target=/x,size=1m",
            "type=secret,from=x,id=y",
            "type=secret,id=a,source=b",
            "type=secret",
            "type=ssh,source=x",
            "type=cache,target=/x,bogus=1",
            "type=cache",
            "type=cache,target=/x,mode=9",
            "type=bind,target=/x,ro=maybe",
            "type=cache,target=/x,stray",
        ] {
            assert!(parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn csv_quoting_is_honoured() {
        let m = parse("type=bind,\"target=/a,b\",source=x").unwrap();
        assert_eq!(m.target, "/a,b");
        assert!(parse("type=bind,target=/a\"b").is_err());
    }

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(ram_in_bytes("1024"), Some(1024));
        assert_eq!(ram_in_bytes("1k"), Some(1024));
        assert_eq!(ram_in_bytes("1.5GiB"), Some(3 << 29));
        assert_eq!(ram_in_bytes("12x"), None);
    }
}
