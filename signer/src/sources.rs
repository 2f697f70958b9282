//! The credential sources as configured, without I/O: `aws_credentials`
//! (instance metadata, the container endpoint, STS web identity) and
//! `aws_assume_role` parameters, with the standard AWS environment
//! variables where no parameter says otherwise; role ARNs, session names,
//! durations, external IDs and STS endpoints checked.

use zeroize::Zeroizing;

use crate::creds::{self, HttpEndpoint};

/// The role asked for, and how.
#[derive(Clone)]
pub struct RoleRequest {
    /// `arn:aws:iam::ACCOUNT:role/NAME`.
    pub arn: String,
    /// The role session name (CloudTrail shows it).
    pub session_name: String,
    /// `DurationSeconds`, when not the role's default.
    pub duration: Option<u32>,
}

/// The parameters of an STS source before its TLS context exists.
pub struct StsSpec {
    /// The endpoint (`https://`, no path).
    pub url: creds::Url,
    /// The region STS calls are signed for.
    pub region: String,
    /// Where to connect instead of resolving the endpoint's name.
    pub address: Option<std::net::SocketAddr>,
    /// A CA file to trust instead of the system's bundle.
    pub ca: Option<String>,
}

/// Default EKS Pod Identity endpoint and token file.
const EKS_URI: &str = "http://169.254.170.23/v1/credentials";
const EKS_TOKEN_FILE: &str =
    "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token";

/// EC2 instance metadata: IMDSv2, IMDSv1 only when allowed.
pub struct Imds {
    /// The metadata service.
    pub endpoint: HttpEndpoint,
    /// The role's name, else asked of the service.
    pub role: Option<String>,
    /// IMDSv1 when the IMDSv2 token request fails.
    pub v1_fallback: bool,
}

/// The container endpoint: ECS task roles, EKS Pod Identity.
pub struct Container {
    /// The container credentials endpoint.
    pub endpoint: HttpEndpoint,
    /// A fixed authorization token.
    pub token: Option<Zeroizing<String>>,
    /// A file holding the authorization token, read at every fetch.
    pub token_file: Option<String>,
}

/// A source as `aws_credentials` gives it.
pub enum SourceSpec {
    /// Instance metadata.
    Imds(Imds),
    /// The container endpoint.
    Container(Container),
    /// STS `AssumeRoleWithWebIdentity` (EKS IRSA).
    WebIdentity {
        /// The role.
        role: RoleRequest,
        /// The OIDC token's file, read at every fetch.
        token_file: String,
        /// Where STS is.
        sts: StsSpec,
    },
}

/// A parsed `aws_credentials`: the source's name (`imds`, `ecs`,
/// `eks-pod-identity`, `web-identity`), what it is, and its description
/// (for logs and its zone's name: never a secret).
pub struct Parsed {
    /// `imds`, `ecs`, `eks-pod-identity` or `web-identity`.
    pub name: &'static str,
    /// What the source is.
    pub spec: SourceSpec,
    /// For logs and the zone's name.
    pub description: String,
}

/// Parses `aws_credentials SOURCE [name=value ...]`, with the standard AWS
/// variables from `env` where no parameter says otherwise.
pub fn parse_source(
    args: &[&[u8]],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Parsed, String> {
    let Some((first, params)) = args.split_first() else {
        return Err("a source is needed: imds, ecs, eks-pod-identity or web-identity".into());
    };
    let given = name_values(params)?;
    let allowed = |names: &[&str]| allowed(&given, names);
    let param = |k: &str| param(&given, k);
    let source = String::from_utf8_lossy(first).to_ascii_lowercase();
    match source.as_str() {
        "imds" => {
            allowed(&["endpoint", "role", "imdsv1"])?;
            let url = match (param("endpoint"), env("AWS_EC2_METADATA_SERVICE_ENDPOINT")) {
                (Some(u), _) | (None, Some(u)) => u,
                (None, None) => match env("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE") {
                    Some(m) if m.eq_ignore_ascii_case("ipv6") => "http://[fd00:ec2::254]".into(),
                    _ => "http://169.254.169.254".into(),
                },
            };
            let endpoint = creds::parse_http_endpoint(url.trim_end_matches('/'))?;
            let v1_disabled =
                env("AWS_EC2_METADATA_V1_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
            let v1_fallback = match param("imdsv1").as_deref() {
                None => false,
                Some(v) if v.eq_ignore_ascii_case("on") => !v1_disabled,
                Some(v) if v.eq_ignore_ascii_case("off") => false,
                Some(v) => {
                    return Err(format!(
                        "invalid imdsv1=\"{v}\", it must be \"on\" or \"off\""
                    ))
                }
            };
            let role = param("role");
            if let Some(r) = &role {
                if r.is_empty()
                    || !r
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
                {
                    return Err(format!("invalid role name \"{r}\""));
                }
            }
            let description = format!(
                "imds ({}{}{})",
                url.trim_end_matches('/'),
                role.as_deref()
                    .map(|r| format!(", role {r}"))
                    .unwrap_or_default(),
                if v1_fallback { ", IMDSv1 fallback" } else { "" }
            );
            Ok(Parsed {
                name: "imds",
                spec: SourceSpec::Imds(Imds {
                    endpoint,
                    role,
                    v1_fallback,
                }),
                description,
            })
        }
        "ecs" | "eks-pod-identity" => {
            allowed(&["uri", "token_file"])?;
            let eks = source == "eks-pod-identity";
            let relative = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
            let uri = match (param("uri"), relative, env("AWS_CONTAINER_CREDENTIALS_FULL_URI")) {
                (Some(u), ..) => u,
                (None, Some(rel), _) if !eks => format!("http://169.254.170.2{rel}"),
                (None, _, Some(full)) => full,
                (None, ..) if eks => EKS_URI.into(),
                (None, ..) => {
                    return Err(
                        "no container endpoint: neither AWS_CONTAINER_CREDENTIALS_RELATIVE_URI nor AWS_CONTAINER_CREDENTIALS_FULL_URI is set in nginx's environment, and no uri= is given"
                            .into(),
                    )
                }
            };
            let endpoint = creds::parse_http_endpoint(&uri)?;
            if !creds::is_container_address(endpoint.addr.ip()) {
                return Err(format!(
                    "\"{uri}\": a container credentials endpoint over http must be a loopback address, 169.254.170.2, 169.254.170.23 or fd00:ec2::23"
                ));
            }
            let token_file = param("token_file")
                .or_else(|| env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"))
                .or_else(|| eks.then(|| EKS_TOKEN_FILE.to_owned()));
            let token = match &token_file {
                Some(_) => None,
                None => env("AWS_CONTAINER_AUTHORIZATION_TOKEN").map(Zeroizing::new),
            };
            let auth = match (&token_file, &token) {
                (Some(f), _) => format!(", token file {f}"),
                (None, Some(_)) => ", token from AWS_CONTAINER_AUTHORIZATION_TOKEN".into(),
                (None, None) => String::new(),
            };
            let name = if eks { "eks-pod-identity" } else { "ecs" };
            let description = format!("{name} ({uri}{auth})");
            Ok(Parsed {
                name,
                spec: SourceSpec::Container(Container {
                    endpoint,
                    token,
                    token_file,
                }),
                description,
            })
        }
        "web-identity" => {
            allowed(&[
                "role_arn",
                "token_file",
                "session_name",
                "duration",
                "sts_endpoint",
                "sts_address",
                "sts_region",
                "ca",
            ])?;
            let arn = param("role_arn").or_else(|| env("AWS_ROLE_ARN")).ok_or(
                "no role: AWS_ROLE_ARN is not set in nginx's environment, and no role_arn= is given",
            )?;
            let token_file = param("token_file")
                .or_else(|| env("AWS_WEB_IDENTITY_TOKEN_FILE"))
                .ok_or("no token file: AWS_WEB_IDENTITY_TOKEN_FILE is not set in nginx's environment, and no token_file= is given")?;
            let session_name = param("session_name")
                .or_else(|| env("AWS_ROLE_SESSION_NAME"))
                .unwrap_or_else(|| "nginx-aws-auth".into());
            let role = role_request(arn, session_name, param("duration"))?;
            let sts = sts_spec(&param, env)?;
            let description = format!(
                "web-identity ({}, session {}{}, token file {token_file}, {})",
                role.arn,
                role.session_name,
                role.duration
                    .map(|d| format!(", {d} s"))
                    .unwrap_or_default(),
                sts.describe()
            );
            Ok(Parsed {
                name: "web-identity",
                spec: SourceSpec::WebIdentity {
                    role,
                    token_file,
                    sts,
                },
                description,
            })
        }
        other => Err(format!(
            "unknown source \"{other}\", it must be imds, ecs, eks-pod-identity or web-identity"
        )),
    }
}

/// `name=value` parameters, each name once.
fn name_values(params: &[&[u8]]) -> Result<Vec<(String, String)>, String> {
    let mut given: Vec<(String, String)> = Vec::new();
    for p in params {
        let p = String::from_utf8_lossy(p);
        let Some((k, v)) = p.split_once('=') else {
            return Err(format!("invalid parameter \"{p}\", expected name=value"));
        };
        if given.iter().any(|(g, _)| g == k) {
            return Err(format!("parameter \"{k}\" is given twice"));
        }
        given.push((k.to_owned(), v.to_owned()));
    }
    Ok(given)
}

fn allowed(given: &[(String, String)], names: &[&str]) -> Result<(), String> {
    match given.iter().find(|(k, _)| !names.contains(&k.as_str())) {
        Some((k, _)) => Err(format!(
            "unknown parameter \"{k}\" (allowed: {})",
            names.join(", ")
        )),
        None => Ok(()),
    }
}

fn param(given: &[(String, String)], k: &str) -> Option<String> {
    given.iter().find(|(g, _)| g == k).map(|(_, v)| v.clone())
}

/// `aws_assume_role`: a role to assume with the block's credentials.
#[derive(Clone)]
pub enum Assume {
    /// `aws_assume_role off`: the block signs with its credentials as
    /// they are.
    Off,
    /// A role to assume.
    Role(AssumeSpec),
}

/// `aws_assume_role ARN [name=value ...]` as written; the STS endpoint is
/// settled at merge, where the block's `aws_region` is known.
#[derive(Clone)]
pub struct AssumeSpec {
    /// The role.
    pub role: RoleRequest,
    /// The external ID its trust policy asks for.
    pub external_id: Option<String>,
    /// The `sts_*` and `ca` parameters.
    pub sts_params: Vec<(String, String)>,
}

const STS_PARAMS: [&str; 4] = ["sts_endpoint", "sts_address", "sts_region", "ca"];

/// Parses `aws_assume_role off | ARN [external_id=] [session_name=]
/// [duration=] [sts_endpoint=] [sts_address=] [sts_region=] [ca=]`.
pub fn parse_assume(
    args: &[&[u8]],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Assume, String> {
    let Some((first, params)) = args.split_first() else {
        return Err("a role ARN (or off) is needed".into());
    };
    if first.eq_ignore_ascii_case(b"off") {
        if !params.is_empty() {
            return Err("\"off\" takes no parameters".into());
        }
        return Ok(Assume::Off);
    }
    let given = name_values(params)?;
    let mut names = vec!["external_id", "session_name", "duration"];
    names.extend(STS_PARAMS);
    allowed(&given, &names)?;
    let session_name = param(&given, "session_name").unwrap_or_else(|| "nginx-aws-auth".into());
    let role = role_request(
        String::from_utf8_lossy(first).into_owned(),
        session_name,
        param(&given, "duration"),
    )?;
    let external_id = param(&given, "external_id");
    if let Some(id) = &external_id {
        let ok = |b: u8| b.is_ascii_alphanumeric() || b"+=,.@:/-_".contains(&b);
        if id.len() < 2 || id.len() > 1224 || !id.bytes().all(ok) {
            return Err("invalid external_id (2 to 1224 of a-z A-Z 0-9 + = , . @ : / - _)".into());
        }
    }
    let sts_params: Vec<(String, String)> = given
        .into_iter()
        .filter(|(k, _)| STS_PARAMS.contains(&k.as_str()))
        .collect();
    // checked now, so that a mistake points at this line
    sts_spec(&|k| param(&sts_params, k), env)?;
    Ok(Assume::Role(AssumeSpec {
        role,
        external_id,
        sts_params,
    }))
}

impl AssumeSpec {
    /// The STS endpoint for a block whose `aws_region` is `region`:
    /// `sts_region=`, else that region, else `AWS_REGION`.
    pub fn sts(
        &self,
        region: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<StsSpec, String> {
        let p = |k: &str| {
            param(&self.sts_params, k).or_else(|| {
                (k == "sts_region")
                    .then(|| region.map(str::to_owned))
                    .flatten()
            })
        };
        sts_spec(&p, env)
    }

    /// What the source is, for logs and its zone: everything that makes
    /// it another source, never a secret.
    pub fn describe(&self, sts: &StsSpec, base: &str) -> String {
        format!(
            "assume-role ({}{}, session {}{}, {}, signed with {base})",
            self.role.arn,
            self.external_id
                .as_deref()
                .map(|e| format!(", external ID {e}"))
                .unwrap_or_default(),
            self.role.session_name,
            self.role
                .duration
                .map(|d| format!(", {d} s"))
                .unwrap_or_default(),
            sts.describe()
        )
    }
}

impl StsSpec {
    /// The endpoint, the address used instead of the name, the CA file.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}){}{}",
            self.url.authority(),
            self.region,
            self.address.map(|a| format!(" at {a}")).unwrap_or_default(),
            self.ca
                .as_deref()
                .map(|c| format!(", CA {c}"))
                .unwrap_or_default()
        )
    }
}

/// Checks a role ARN, session name and duration.
pub fn role_request(
    arn: String,
    session_name: String,
    duration: Option<String>,
) -> Result<RoleRequest, String> {
    let arn_ok = arn.starts_with("arn:")
        && arn.contains(":role/")
        && !arn.bytes().any(|b| b <= b' ' || b >= 0x7f);
    if !arn_ok {
        return Err(format!(
            "\"{arn}\" is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME)"
        ));
    }
    let name_ok = |b: u8| b.is_ascii_alphanumeric() || b"=,.@_-".contains(&b);
    if session_name.len() < 2 || session_name.len() > 64 || !session_name.bytes().all(name_ok) {
        return Err(format!(
            "invalid session name \"{session_name}\" (2 to 64 of a-z A-Z 0-9 = , . @ _ -)"
        ));
    }
    let duration = match duration {
        None => None,
        Some(d) => Some(
            d.parse::<u32>()
                .ok()
                .filter(|d| (900..=43_200).contains(d))
                .ok_or_else(|| format!("invalid duration={d}: 900 to 43200 seconds"))?,
        ),
    };
    Ok(RoleRequest {
        arn,
        session_name,
        duration,
    })
}

/// The STS endpoint of a source: `sts_endpoint=`, else the regional
/// endpoint of `sts_region=` or `AWS_REGION` (the global one without a
/// region, or with `AWS_STS_REGIONAL_ENDPOINTS=legacy`); `sts_address=`
/// and `ca=`.
pub fn sts_spec(
    param: &dyn Fn(&str) -> Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<StsSpec, String> {
    let region = param("sts_region")
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_default();
    if !region
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!("invalid STS region \"{region}\""));
    }
    let legacy =
        env("AWS_STS_REGIONAL_ENDPOINTS").is_some_and(|v| v.eq_ignore_ascii_case("legacy"));
    let explicit = param("sts_endpoint");
    let url = explicit
        .clone()
        .unwrap_or_else(|| crate::sts::endpoint(&region, legacy));
    let url = creds::parse_url(&url)?;
    if !url.tls {
        return Err(format!("\"{}\": STS is reached over https only", url.host));
    }
    if url.path != "/" {
        return Err(format!(
            "\"{}\": an STS endpoint is a scheme, host and port, without a path",
            url.host
        ));
    }
    let address = match param("sts_address") {
        None => None,
        Some(a) => Some(a.parse::<std::net::SocketAddr>().map_err(|_| {
            format!("invalid sts_address=\"{a}\": an address and port, e.g. 10.0.0.5:443")
        })?),
    };
    let region = if region.is_empty() || (legacy && explicit.is_none()) {
        "us-east-1".to_owned()
    } else {
        region
    };
    Ok(StsSpec {
        url,
        region,
        address,
        ca: param("ca"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn args(line: &str) -> Vec<&[u8]> {
        line.split_whitespace().map(str::as_bytes).collect()
    }

    const ARN: &str = "arn:aws:iam::111122223333:role/s3-reader";

    fn web(spec: SourceSpec) -> (RoleRequest, String, StsSpec) {
        match spec {
            SourceSpec::WebIdentity {
                role,
                token_file,
                sts,
            } => (role, token_file, sts),
            _ => panic!("not web identity"),
        }
    }

    fn err(r: Result<Parsed, String>) -> String {
        match r {
            Ok(p) => panic!("accepted: {}", p.description),
            Err(e) => e,
        }
    }

    #[test]
    fn web_identity_from_the_environment() {
        let env = env_of(&[
            ("AWS_ROLE_ARN", ARN),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token"),
            ("AWS_ROLE_SESSION_NAME", "pod-1"),
            ("AWS_REGION", "eu-west-1"),
        ]);
        let p = parse_source(&args("web-identity"), &env).unwrap();
        assert_eq!(p.name, "web-identity");
        let (role, token_file, sts) = web(p.spec);
        assert_eq!(
            (role.arn.as_str(), role.session_name.as_str()),
            (ARN, "pod-1")
        );
        assert_eq!(token_file, "/var/run/token");
        assert_eq!(sts.url.authority(), "sts.eu-west-1.amazonaws.com");
        assert_eq!(sts.region, "eu-west-1");
        // parameters win over the environment
        let p = parse_source(
            &args("web-identity role_arn=arn:aws:iam::1:role/x token_file=/t session_name=n2 sts_region=us-west-2 duration=900"),
            &env,
        )
        .unwrap();
        let (role, token_file, sts) = web(p.spec);
        assert_eq!(
            (role.arn.as_str(), token_file.as_str()),
            ("arn:aws:iam::1:role/x", "/t")
        );
        assert_eq!(
            (role.session_name.as_str(), role.duration),
            ("n2", Some(900))
        );
        assert_eq!(sts.url.authority(), "sts.us-west-2.amazonaws.com");
        // legacy: the global endpoint, signed for us-east-1
        let legacy = env_of(&[
            ("AWS_ROLE_ARN", ARN),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_STS_REGIONAL_ENDPOINTS", "legacy"),
        ]);
        let (role, _, sts) = web(parse_source(&args("web-identity"), &legacy).unwrap().spec);
        assert_eq!(
            (sts.url.authority().as_str(), sts.region.as_str()),
            ("sts.amazonaws.com", "us-east-1")
        );
        assert_eq!(role.session_name, "nginx-aws-auth");
        // China
        let cn = env_of(&[("AWS_REGION", "cn-north-1")]);
        let (_, _, sts) = web(parse_source(
            &args(&format!("web-identity role_arn={ARN} token_file=/t")),
            &cn,
        )
        .unwrap()
        .spec);
        assert_eq!(sts.url.authority(), "sts.cn-north-1.amazonaws.com.cn");
        // nothing to go on
        let none = env_of(&[]);
        assert!(
            err(parse_source(&args("web-identity token_file=/t"), &none)).contains("AWS_ROLE_ARN")
        );
        assert!(err(parse_source(
            &args(&format!("web-identity role_arn={ARN}")),
            &none
        ))
        .contains("AWS_WEB_IDENTITY_TOKEN_FILE"));
    }

    #[test]
    fn sts_endpoints_are_https_without_a_path() {
        let env = env_of(&[]);
        let base = format!("web-identity role_arn={ARN} token_file=/t");
        for bad in [
            "sts_endpoint=http://sts.test",
            "sts_endpoint=https://sts.test/x",
            "sts_endpoint=sts.test",
            "sts_address=sts.test:443",
            "sts_region=EU-WEST-1",
        ] {
            assert!(
                parse_source(&args(&format!("{base} {bad}")), &env).is_err(),
                "{bad}"
            );
        }
        let p = parse_source(
            &args(&format!("{base} sts_endpoint=https://vpce-1.sts.eu-west-1.vpce.amazonaws.com:8443 sts_address=10.0.0.5:8443 ca=/etc/ca.pem")),
            &env,
        )
        .unwrap();
        let description = p.description.clone();
        let (_, _, sts) = web(p.spec);
        assert_eq!(sts.url.port, 8443);
        assert_eq!(sts.address, Some("10.0.0.5:8443".parse().unwrap()));
        assert_eq!(sts.ca.as_deref(), Some("/etc/ca.pem"));
        assert!(description.contains(
            "vpce-1.sts.eu-west-1.vpce.amazonaws.com:8443 (us-east-1) at 10.0.0.5:8443, CA /etc/ca.pem"
        ));
    }

    #[test]
    fn assume_role_parameters() {
        let env = env_of(&[("AWS_REGION", "eu-west-1")]);
        assert!(matches!(parse_assume(&args("off"), &env), Ok(Assume::Off)));
        assert!(matches!(parse_assume(&args("OFF"), &env), Ok(Assume::Off)));
        for bad in [
            "off duration=900",
            "arn:aws:s3:::bucket",
            "arn:aws:iam::1:user/alice",
            "arn:aws:iam::111122223333:role/r duration=899",
            "arn:aws:iam::111122223333:role/r duration=43201",
            "arn:aws:iam::111122223333:role/r duration=1h",
            "arn:aws:iam::111122223333:role/r external_id=x",
            "arn:aws:iam::111122223333:role/r external_id=a\"b",
            "arn:aws:iam::111122223333:role/r session_name=x",
            "arn:aws:iam::111122223333:role/r session_name=a/b",
            "arn:aws:iam::111122223333:role/r role_arn=x",
            "arn:aws:iam::111122223333:role/r duration=900 duration=900",
            "arn:aws:iam::111122223333:role/r sts_endpoint=http://sts.test",
        ] {
            assert!(parse_assume(&args(bad), &env).is_err(), "{bad}");
        }
        let Assume::Role(spec) = parse_assume(
            &args(&format!("{ARN} external_id=Tenant-7f3a:x/y duration=43200 session_name=edge@nginx sts_address=127.0.0.1:9443")),
            &env,
        )
        .unwrap() else {
            panic!("not a role")
        };
        assert_eq!(spec.role.duration, Some(43200));
        assert_eq!(spec.external_id.as_deref(), Some("Tenant-7f3a:x/y"));
        // the STS region: sts_region=, else the block's aws_region, else AWS_REGION
        let sts = spec.sts(Some("ap-south-1"), &env).unwrap();
        assert_eq!(
            (sts.url.authority().as_str(), sts.region.as_str()),
            ("sts.ap-south-1.amazonaws.com", "ap-south-1")
        );
        assert_eq!(sts.address, Some("127.0.0.1:9443".parse().unwrap()));
        assert_eq!(spec.sts(None, &env).unwrap().region, "eu-west-1");
        let Assume::Role(spec) =
            parse_assume(&args(&format!("{ARN} sts_region=us-west-2")), &env).unwrap()
        else {
            panic!("not a role")
        };
        assert_eq!(
            spec.sts(Some("ap-south-1"), &env).unwrap().region,
            "us-west-2"
        );
        let d = spec.describe(
            &spec.sts(None, &env).unwrap(),
            "imds (http://169.254.169.254)",
        );
        assert_eq!(
            d,
            "assume-role (arn:aws:iam::111122223333:role/s3-reader, session nginx-aws-auth, sts.us-west-2.amazonaws.com (us-west-2), signed with imds (http://169.254.169.254))"
        );
    }

    #[test]
    fn machine_sources() {
        let env = env_of(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv6")]);
        let p = parse_source(&args("imds"), &env).unwrap();
        let SourceSpec::Imds(Imds {
            endpoint,
            v1_fallback,
            ..
        }) = p.spec
        else {
            panic!("not imds")
        };
        assert_eq!(endpoint.addr.to_string(), "[fd00:ec2::254]:80");
        assert!(!v1_fallback);
        let off = env_of(&[("AWS_EC2_METADATA_V1_DISABLED", "true")]);
        let SourceSpec::Imds(Imds { v1_fallback, .. }) =
            parse_source(&args("imds imdsv1=on"), &off).unwrap().spec
        else {
            panic!("not imds")
        };
        assert!(!v1_fallback);
        let ecs = env_of(&[
            (
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "/v2/credentials/t1",
            ),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "tok"),
        ]);
        let p = parse_source(&args("ecs"), &ecs).unwrap();
        assert_eq!(p.description, "ecs (http://169.254.170.2/v2/credentials/t1, token from AWS_CONTAINER_AUTHORIZATION_TOKEN)");
        assert!(!p.description.contains("tok)"));
        assert!(parse_source(&args("ecs uri=http://10.1.1.1/c"), &ecs).is_err());
        assert!(parse_source(&args("sts"), &ecs).is_err());
    }
}
