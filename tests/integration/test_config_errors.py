"""`nginx -t` with bad module configuration must fail with an ``[emerg]``
line that names the offending directive; good configurations must pass.

Only `nginx -t` is run here (nothing is started), so these are fast."""

from __future__ import annotations

import base64
import re

import pytest

import harness

AK = harness.ACCESS_KEY
SCOPE = "20150830/us-east-1/s3/aws4_request"
KEY = base64.b64encode(bytes(range(32))).decode()  # any 32 bytes is a valid key
KEY31 = base64.b64encode(bytes(range(31))).decode()
KEY33 = base64.b64encode(bytes(range(33))).decode()


def cfg(server: str = "", location: str = "", http: str = "") -> str:
    return f"""
{http}
    server {{
        listen 127.0.0.1:{{port}};
{server}
        location / {{
{location}
            proxy_pass http://127.0.0.1:9;
        }}
    }}"""


ARN = "arn:aws:iam::111122223333:role/s3-reader"
ADDR = "sts_endpoint=https://sts.test sts_address=127.0.0.1:9443"
IMDS = "aws_region us-east-1;\naws_s3_bucket b;\naws_credentials imds;\n"


def assume(params: str = "") -> str:
    return f"aws_assume_role {ARN} {params};\n"


def keys(ak: str | None = AK, scope: str | None = SCOPE, key: str | None = KEY) -> str:
    out = []
    if ak is not None:
        out.append(f"aws_access_key {ak};")
    if scope is not None:
        out.append(f"aws_key_scope {scope};")
    if key is not None:
        out.append(f"aws_signing_key {key};")
    return "\n".join(out)


BAD = [
    # signing key
    ("signing_key_bad_base64", cfg(keys(key='"not*valid*base64!"'), "aws_sign;"), ["aws_signing_key"]),
    ("signing_key_31_bytes", cfg(keys(key=KEY31), "aws_sign;"), ["aws_signing_key"]),
    ("signing_key_33_bytes", cfg(keys(key=KEY33), "aws_sign;"), ["aws_signing_key"]),
    ("signing_key_empty", cfg(keys(key='""'), "aws_sign;"), ["aws_signing_key"]),
    ("signing_key_hex_not_base64", cfg(keys(key="ab" * 32), "aws_sign;"), ["aws_signing_key"]),
    # key scope
    ("scope_month_13", cfg(keys(scope="20151301/us-east-1/s3/aws4_request"), "aws_sign;"), ["aws_key_scope"]),
    ("scope_day_32", cfg(keys(scope="20150832/us-east-1/s3/aws4_request"), "aws_sign;"), ["aws_key_scope"]),
    ("scope_date_dashes", cfg(keys(scope="2015-08-30/us-east-1/s3/aws4_request"), "aws_sign;"), ["aws_key_scope"]),
    ("scope_date_short", cfg(keys(scope="2015083/us-east-1/s3/aws4_request"), "aws_sign;"), ["aws_key_scope"]),
    ("scope_date_letters", cfg(keys(scope="2015O830/us-east-1/s3/aws4_request"), "aws_sign;"), ["aws_key_scope"]),
    ("scope_missing_service", cfg(keys(scope="20150830/us-east-1/aws4_request"), "aws_sign;"), ["aws_key_scope"]),
    ("scope_missing_terminator", cfg(keys(scope="20150830/us-east-1/s3"), "aws_sign;"), ["aws_key_scope"]),
    ("scope_date_only", cfg(keys(scope="20150830"), "aws_sign;"), ["aws_key_scope"]),
    ("scope_empty_region", cfg(keys(scope="20150830//s3/aws4_request"), "aws_sign;"), ["aws_key_scope"]),
    ("scope_extra_part", cfg(keys(scope="20150830/us-east-1/s3/x/aws4_request"), "aws_sign;"), ["aws_key_scope"]),
    ("scope_not_aws4_request", cfg(keys(scope="20150830/us-east-1/s3/aws5_request"), "aws_sign;"), ["aws_key_scope"]),
    ("scope_terminator_suffix", cfg(keys(scope="20150830/us-east-1/s3/aws4_requests"), "aws_sign;"), ["aws_key_scope"]),
    # empty string values
    ("access_key_empty", cfg(keys(ak='""'), "aws_sign;"), ["aws_access_key"]),
    ("bucket_empty", cfg(keys() + '\naws_s3_bucket "";', "aws_sign;"), ["aws_s3_bucket"]),
    # endpoint is HOST[:PORT]
    ("endpoint_empty", cfg(keys() + '\naws_endpoint "";', "aws_sign;"), ["aws_endpoint"]),
    ("endpoint_port_not_numeric", cfg(keys() + "\naws_endpoint s3.example.com:http;", "aws_sign;"), ["aws_endpoint"]),
    ("endpoint_port_too_big", cfg(keys() + "\naws_endpoint s3.example.com:99999;", "aws_sign;"), ["aws_endpoint"]),
    # aws_sign without the material it needs
    ("sign_without_signing_key", cfg(keys(key=None), "aws_sign;"), ["aws_sign", "aws_signing_key"]),
    ("sign_without_access_key", cfg(keys(ak=None), "aws_sign;"), ["aws_sign", "aws_access_key"]),
    ("sign_without_scope", cfg(keys(scope=None), "aws_sign;"), ["aws_sign", "aws_key_scope"]),
    ("sign_on_without_any_key", cfg("", "aws_sign on;"), ["aws_sign", "aws_access_key", "aws_signing_key", "aws_key_scope"]),
    ("sign_at_server_level_without_keys", cfg("aws_sign;", ""), ["aws_sign", "aws_access_key", "aws_signing_key", "aws_key_scope"]),
    (
        "sign_with_keys_only_in_sibling_location",
        cfg(
            "location /other/ {\n" + keys() + "\nproxy_pass http://127.0.0.1:9; }",
            "aws_sign;",
        ),
        ["aws_sign", "aws_access_key", "aws_signing_key", "aws_key_scope"],
    ),
    # bad flag
    ("sign_maybe", cfg(keys(), "aws_sign maybe;"), ["aws_sign"]),
    ("sign_two_args", cfg(keys(), "aws_sign on off;"), ["aws_sign"]),
    # argument count
    ("access_key_no_arg", cfg(keys(ak=None) + "\naws_access_key;", ""), ["aws_access_key"]),
    ("access_key_two_args", cfg(keys(ak="A B"), ""), ["aws_access_key"]),
    # duplicates in one block
    ("dup_access_key", cfg(keys() + f"\naws_access_key {AK};", "aws_sign;"), ["aws_access_key"]),
    ("dup_key_scope", cfg(keys() + f"\naws_key_scope {SCOPE};", "aws_sign;"), ["aws_key_scope"]),
    ("dup_signing_key", cfg(keys() + f"\naws_signing_key {KEY};", "aws_sign;"), ["aws_signing_key"]),
    ("dup_bucket", cfg(keys() + "\naws_s3_bucket a;\naws_s3_bucket b;", "aws_sign;"), ["aws_s3_bucket"]),
    ("dup_endpoint", cfg(keys() + "\naws_endpoint a.example;\naws_endpoint b.example;", "aws_sign;"), ["aws_endpoint"]),
    ("dup_sign", cfg(keys(), "aws_sign;\naws_sign on;"), ["aws_sign"]),
    ("dup_sign_in_location", cfg("", keys() + "\naws_sign off;\naws_sign on;"), ["aws_sign"]),
    # addressing
    ("addressing_bad_value", cfg(keys() + "\naws_s3_addressing vhost;", "aws_sign;"), ["aws_s3_addressing"]),
    ("addressing_no_arg", cfg(keys() + "\naws_s3_addressing;", "aws_sign;"), ["aws_s3_addressing"]),
    ("dup_addressing", cfg(keys() + "\naws_s3_addressing path;\naws_s3_addressing path;", "aws_sign;"),
     ["aws_s3_addressing"]),
    ("virtual_addressing_ip_endpoint",
     cfg(keys() + "\naws_s3_bucket b;\naws_endpoint 127.0.0.1:9000;\naws_s3_addressing virtual;", "aws_sign;"),
     ["aws_s3_addressing"]),
    ("virtual_addressing_ipv6_endpoint",
     cfg(keys() + "\naws_s3_bucket b;\naws_endpoint [::1]:9000;", "aws_s3_addressing virtual;\naws_sign;"),
     ["aws_s3_addressing"]),
    # client x-amz-* headers to forward
    ("forward_not_amz", cfg(keys(), "aws_forward_amz_headers content-type;\naws_sign;"), ["aws_forward_amz_headers"]),
    ("forward_amz_date", cfg(keys(), "aws_forward_amz_headers x-amz-date;\naws_sign;"), ["aws_forward_amz_headers"]),
    ("forward_content_sha", cfg(keys(), "aws_forward_amz_headers X-Amz-Content-Sha256;\naws_sign;"),
     ["aws_forward_amz_headers"]),
    ("forward_token", cfg(keys(), "aws_forward_amz_headers x-amz-security-token;\naws_sign;"),
     ["aws_forward_amz_headers"]),
    ("forward_authorization", cfg(keys(), "aws_forward_amz_headers authorization;\naws_sign;"),
     ["aws_forward_amz_headers"]),
    ("forward_none_and_names", cfg(keys(), "aws_forward_amz_headers none x-amz-foo;\naws_sign;"),
     ["aws_forward_amz_headers"]),
    ("forward_every_amz", cfg(keys(), "aws_forward_amz_headers x-amz-*;\naws_sign;"),
     ["aws_forward_amz_headers"]),
    ("forward_pattern_of_own", cfg(keys(), "aws_forward_amz_headers x-amz-date*;\naws_sign;"),
     ["aws_forward_amz_headers"]),
    ("forward_listed_twice", cfg(keys(), "aws_forward_amz_headers x-amz-foo X-Amz-Foo;\naws_sign;"),
     ["aws_forward_amz_headers"]),
    ("forward_bad_char", cfg(keys(), 'aws_forward_amz_headers "x-amz-a b";\naws_sign;'), ["aws_forward_amz_headers"]),
    ("forward_no_arg", cfg(keys(), "aws_forward_amz_headers;\naws_sign;"), ["aws_forward_amz_headers"]),
    ("dup_forward", cfg(keys(), "aws_forward_amz_headers x-amz-a;\naws_forward_amz_headers x-amz-b;\naws_sign;"),
     ["aws_forward_amz_headers"]),
    # methods, payloads, presigned URLs
    ("methods_unknown", cfg(keys(), "aws_sign_methods GET FETCH;\naws_sign;"), ["aws_sign_methods"]),
    ("methods_no_arg", cfg(keys(), "aws_sign_methods;\naws_sign;"), ["aws_sign_methods"]),
    ("dup_methods", cfg(keys(), "aws_sign_methods GET;\naws_sign_methods PUT;\naws_sign;"), ["aws_sign_methods"]),
    ("payload_bad", cfg(keys(), "aws_payload streaming;\naws_sign;"), ["aws_payload"]),
    ("payload_max_zero", cfg(keys(), "aws_payload_max_size 0;\naws_sign;"), ["aws_payload_max_size"]),
    ("payload_max_words", cfg(keys(), "aws_payload_max_size lots;\naws_sign;"), ["aws_payload_max_size"]),
    ("payload_max_unit", cfg(keys(), "aws_payload_max_size 5t;\naws_sign;"), ["aws_payload_max_size"]),
    ("sha_header_bad", cfg(keys(), "aws_content_sha256_header yes;\naws_sign;"), ["aws_content_sha256_header"]),
    ("presign_8d", cfg(keys(), "aws_presign_expires 8d;"), ["aws_presign_expires"]),
    ("presign_604801", cfg(keys(), "aws_presign_expires 604801;"), ["aws_presign_expires"]),
    ("presign_zero", cfg(keys(), "aws_presign_expires 0;"), ["aws_presign_expires"]),
    ("presign_scheme_ftp", cfg(keys(), "aws_presign_scheme ftp;"), ["aws_presign_scheme"]),
    # one rule for on/off: nginx's (any case), nothing else
    ("sign_yes", cfg(keys(), "aws_sign yes;"), ["aws_sign"]),
    ("listing_yes", cfg(keys(), "aws_s3_listing yes;\naws_sign;"), ["aws_s3_listing"]),
    # query parameters to forward
    ("query_x_amz", cfg(keys(), "aws_forward_query_params versionId X-Amz-Expires;\naws_sign;"),
     ["aws_forward_query_params"]),
    ("query_x_amz_lowercase", cfg(keys(), "aws_forward_query_params x-amz-credential;\naws_sign;"),
     ["aws_forward_query_params"]),
    ("query_all_and_names", cfg(keys(), "aws_forward_query_params all versionId;\naws_sign;"),
     ["aws_forward_query_params"]),
    ("query_listed_twice", cfg(keys(), "aws_forward_query_params acl acl;\naws_sign;"),
     ["aws_forward_query_params"]),
    ("query_bad_name", cfg(keys(), 'aws_forward_query_params "a=b";\naws_sign;'), ["aws_forward_query_params"]),
    ("query_no_arg", cfg(keys(), "aws_forward_query_params;\naws_sign;"), ["aws_forward_query_params"]),
    ("bucket_listed_twice", cfg(keys() + "\naws_s3_bucket a b a;", "aws_sign;"), ["aws_s3_bucket"]),
    # role credentials
    ("credentials_unknown_source", cfg("aws_region us-east-1;\naws_credentials sts;", "aws_sign;"),
     ["aws_credentials"]),
    ("credentials_no_source", cfg("aws_region us-east-1;\naws_credentials;", "aws_sign;"), ["aws_credentials"]),
    ("credentials_endpoint_name", cfg("aws_region us-east-1;\naws_credentials imds endpoint=http://metadata/;",
                                      "aws_sign;"), ["aws_credentials"]),
    ("credentials_endpoint_https", cfg("aws_region us-east-1;\naws_credentials imds endpoint=https://127.0.0.1;",
                                       "aws_sign;"), ["aws_credentials"]),
    ("credentials_unknown_param", cfg("aws_region us-east-1;\naws_credentials imds token_file=/x;", "aws_sign;"),
     ["aws_credentials"]),
    ("credentials_imdsv1_maybe", cfg("aws_region us-east-1;\naws_credentials imds imdsv1=maybe;", "aws_sign;"),
     ["aws_credentials"]),
    ("credentials_ecs_without_env", cfg("aws_region us-east-1;\naws_credentials ecs;", "aws_sign;"),
     ["aws_credentials"]),
    ("credentials_container_not_local", cfg("aws_region us-east-1;\naws_credentials ecs uri=http://10.0.0.1/c;",
                                            "aws_sign;"), ["aws_credentials"]),
    ("credentials_without_region", cfg("aws_credentials imds;", "aws_sign;"), ["aws_credentials", "aws_region"]),
    ("credentials_and_signing_key", cfg("aws_region us-east-1;\naws_credentials imds;\n" + keys(ak=None),
                                        "aws_sign;"), ["aws_credentials", "aws_key_scope", "aws_signing_key"]),
    ("credentials_and_access_key", cfg(f"aws_region us-east-1;\naws_access_key {AK};\naws_credentials imds;",
                                       "aws_sign;"), ["aws_credentials"]),
    ("credentials_twice", cfg("aws_region us-east-1;\naws_credentials imds;\naws_credentials imds;", "aws_sign;"),
     ["aws_credentials"]),
    # STS: aws_assume_role and aws_credentials web-identity
    ("assume_role_not_a_role_arn", cfg(IMDS + "aws_assume_role arn:aws:s3:::bucket;", "aws_sign;"),
     ["aws_assume_role"]),
    ("assume_role_with_signing_key", cfg(keys() + "\naws_region us-east-1;\n" + assume(), "aws_sign;"),
     ["aws_assume_role"]),
    ("assume_role_sts_over_http", cfg(IMDS + assume("sts_endpoint=http://sts.test"), "aws_sign;"),
     ["aws_assume_role"]),
    ("assume_role_sts_with_path", cfg(IMDS + assume("sts_endpoint=https://sts.test/sts"), "aws_sign;"),
     ["aws_assume_role"]),
    ("assume_role_duration_short", cfg(IMDS + assume(f"duration=899 {ADDR}"), "aws_sign;"), ["aws_assume_role"]),
    ("assume_role_duration_long", cfg(IMDS + assume(f"duration=43201 {ADDR}"), "aws_sign;"), ["aws_assume_role"]),
    ("assume_role_external_id_short", cfg(IMDS + assume(f"external_id=x {ADDR}"), "aws_sign;"),
     ["aws_assume_role"]),
    ("assume_role_session_name_short", cfg(IMDS + assume(f"session_name=x {ADDR}"), "aws_sign;"),
     ["aws_assume_role"]),
    ("assume_role_unknown_param", cfg(IMDS + assume(f"role_arn=x {ADDR}"), "aws_sign;"), ["aws_assume_role"]),
    ("assume_role_bad_address", cfg(IMDS + assume("sts_address=localhost"), "aws_sign;"), ["aws_assume_role"]),
    ("assume_role_twice", cfg(IMDS + assume(ADDR) + assume(ADDR), "aws_sign;"), ["aws_assume_role"]),
    ("assume_role_off_with_params", cfg(IMDS + "aws_assume_role off duration=900;", "aws_sign;"),
     ["aws_assume_role"]),
    ("assume_role_missing_ca", cfg(IMDS + assume(f"{ADDR} ca=/nonexistent/ca.pem"), "aws_sign;"),
     ["aws_assume_role"]),
    ("assume_role_needs_a_resolver", cfg(IMDS + assume(), "aws_sign;"), ["resolver"]),
    ("assume_role_chained_over_an_hour", cfg(IMDS + assume(f"duration=3601 {ADDR}"), "aws_sign;"),
     ["aws_assume_role"]),
    ("web_identity_without_role", cfg("aws_region us-east-1;\naws_credentials web-identity token_file=/t;",
                                      "aws_sign;"), ["aws_credentials"]),
    ("web_identity_without_token_file", cfg(f"aws_region us-east-1;\naws_credentials web-identity role_arn={ARN};",
                                            "aws_sign;"), ["aws_credentials"]),
    ("web_identity_needs_a_resolver",
     cfg(f"aws_region us-east-1;\naws_credentials web-identity role_arn={ARN} token_file=/t;", "aws_sign;"),
     ["resolver"]),
    ("status_with_an_argument", cfg("", "", http="server { listen 127.0.0.1:9; location = /m { aws_auth_status on; } }"),
     ["aws_auth_status"]),
    ("status_at_http_level", cfg("", "", http="aws_auth_status;"), ["aws_auth_status"]),
    ("index_with_a_slash", cfg(keys(), "aws_s3_index docs/index.html;\naws_sign;"), ["aws_s3_index"]),
    ("index_dotdot", cfg(keys(), "aws_s3_index ..;\naws_sign;"), ["aws_s3_index"]),
    ("index_percent", cfg(keys(), "aws_s3_index index%2Ehtml;\naws_sign;"), ["aws_s3_index"]),
    ("index_twice", cfg(keys() + "\naws_s3_index a.html;\naws_s3_index b.html;", "aws_sign;"), ["aws_s3_index"]),
    ("autoindex_bad_value", cfg(keys(), "aws_s3_autoindex yes;\naws_sign;"), ["aws_s3_autoindex"]),
    ("autoindex_twice", cfg(keys(), "aws_s3_autoindex on;\naws_s3_autoindex off;\naws_sign;"), ["aws_s3_autoindex"]),
    ("autoindex_format_xml", cfg(keys(), "aws_s3_autoindex on;\naws_s3_autoindex_format xml;\naws_sign;"),
     ["aws_s3_autoindex_format"]),
    ("autoindex_max_zero", cfg(keys(), "aws_s3_autoindex_max_entries 0;\naws_sign;"), ["aws_s3_autoindex_max_entries"]),
    ("autoindex_max_huge", cfg(keys(), "aws_s3_autoindex_max_entries 1000001;\naws_sign;"),
     ["aws_s3_autoindex_max_entries"]),
    ("autoindex_max_word", cfg(keys(), "aws_s3_autoindex_max_entries many;\naws_sign;"), ["aws_s3_autoindex_max_entries"]),
    ("append_slash_bad_value", cfg(keys(), "aws_s3_append_slash 1;\naws_sign;"), ["aws_s3_append_slash"]),
    ("append_slash_not_s3", cfg(keys(scope="20150830/us-east-1/execute-api/aws4_request"),
                                "aws_s3_append_slash on;\naws_sign;"), ["aws_s3_append_slash"]),
    ("autoindex_not_s3", cfg(keys(scope="20150830/us-east-1/execute-api/aws4_request"),
                             "aws_s3_autoindex on;\naws_sign;"), ["aws_s3_autoindex"]),
]

GOOD = [
    ("server_keys_location_sign", cfg(keys() + "\naws_s3_bucket testbucket;", "aws_sign;")),
    ("http_keys_location_sign_on", cfg("", "aws_sign on;", http=keys())),
    ("location_keys_and_sign", cfg("", keys() + "\naws_sign;")),
    ("variables_without_aws_sign", cfg(keys(), "proxy_set_header Authorization $s3_auth_token;\n"
                                               "proxy_set_header x-amz-date $aws_date;\n"
                                               "proxy_set_header x-amz-content-sha256 $aws_content_sha256;")),
    ("sign_off_without_keys", cfg("", "aws_sign off;")),
    ("module_loaded_no_directives", cfg("", "")),
    ("keys_without_sign", cfg(keys(), "")),
    ("endpoint_host", cfg(keys() + '\naws_endpoint "s3.cn-north-1.amazonaws.com.cn";', "aws_sign;")),
    ("endpoint_host_port", cfg(keys() + "\naws_endpoint 127.0.0.1:9000;", "aws_sign;")),
    ("leap_day_scope_other_region", cfg(keys(scope="20240229/eu-west-1/s3/aws4_request"), "aws_sign;")),
    (
        "nested_sign_off",
        cfg(keys(), "aws_sign;\nlocation /public/ { aws_sign off; proxy_pass http://127.0.0.1:9; }"),
    ),
    (
        "location_overrides_server_keys",
        cfg(keys(), keys(ak="OTHERKEY", scope="20150831/us-west-2/s3/aws4_request") + "\naws_sign;"),
    ),
    ("same_directive_in_parent_and_child", cfg(keys() + "\naws_sign;", keys())),
    # aws_sign at server level, credentials in the location that serves: the
    # check is made where requests are served.
    ("server_sign_location_keys", cfg("aws_sign;", keys())),
    ("addressing_path_ip_endpoint",
     cfg(keys() + "\naws_s3_bucket b;\naws_endpoint 127.0.0.1:9000;\naws_s3_addressing path;", "aws_sign;")),
    ("addressing_virtual_dns_endpoint_with_port",
     cfg(keys() + "\naws_s3_bucket b;\naws_endpoint minio.internal:9000;\naws_s3_addressing virtual;", "aws_sign;")),
    ("writes_signed_payload", cfg(keys(), "aws_sign_methods get head put post delete;\n"
                                          "aws_payload signed;\naws_payload_max_size 64m;\naws_sign;")),
    ("presign_7d_https", cfg(keys(), "aws_presign_expires 7d;\naws_presign_scheme https;\n"
                                      "return 302 $aws_presigned_url;")),
    ("es_with_sha_header", cfg(keys(scope="20150830/us-east-1/es/aws4_request"),
                               "aws_content_sha256_header on;\naws_payload unsigned;\naws_sign;")),
    ("on_off_any_case", cfg(keys() + "\naws_s3_bucket b;",
                            "aws_sign ON;\naws_content_sha256_header On;\naws_s3_listing OFF;\n"
                            "aws_payload Signed;\naws_s3_addressing PATH;")),
    ("query_params_and_listing", cfg(keys() + "\naws_s3_bucket b c;",
                                     "aws_forward_query_params versionId partNumber;\naws_s3_listing on;\n"
                                     "aws_sign;\nlocation /all/ { aws_forward_query_params all; "
                                     "proxy_pass http://127.0.0.1:9; }")),
    ("credentials_imds", cfg("aws_region us-east-1;\naws_s3_bucket b;\naws_credentials imds;", "aws_sign;")),
    ("credentials_imds_options",
     cfg("aws_region us-east-1;\naws_s3_bucket b;\n"
         "aws_credentials imds endpoint=http://[fd00:ec2::254] role=web imdsv1=on;", "aws_sign;")),
    ("credentials_eks_defaults", cfg("aws_region eu-west-1;\naws_credentials eks-pod-identity;", "aws_sign;")),
    ("credentials_ecs_uri", cfg("aws_region eu-west-1;\naws_credentials ecs uri=http://169.254.170.2/v2/c/1;",
                                "aws_sign;")),
    ("credentials_replace_inherited_keys",
     cfg(keys() + "\naws_region us-east-1;", "aws_credentials imds;\naws_sign;")),
    ("assume_role_over_imds_with_resolver",
     cfg(IMDS + assume("external_id=Zx9-ab:c duration=3600 session_name=web@nginx"), "aws_sign;",
         http="resolver 127.0.0.1 ipv6=off;")),
    ("assume_role_regional_endpoint_in_china", cfg("resolver 127.0.0.1;\naws_region cn-north-1;\n"
                                                   "aws_credentials imds;\n" + assume(), "aws_sign;")),
    ("assume_role_in_location_off_below",
     cfg(IMDS + assume(ADDR), "aws_sign;\nlocation /own/ { aws_assume_role off; proxy_pass http://127.0.0.1:9; }")),
    ("web_identity_with_address",
     cfg(f"aws_region us-east-1;\naws_credentials web-identity role_arn={ARN} token_file=/t session_name=n1 "
         f"duration=900 {ADDR};", "aws_sign;")),
    ("forward_list_and_nested_none",
     cfg(keys() + "\naws_forward_amz_headers x-amz-checksum-mode x-amz-request-payer;",
         "aws_sign;\nlocation /x/ { aws_forward_amz_headers none; proxy_pass http://127.0.0.1:9; }")),
    ("index_and_off_below", cfg(keys() + "\naws_s3_index index.html;",
                                "aws_sign;\nlocation /raw/ { aws_s3_index off; proxy_pass http://127.0.0.1:9; }")),
    ("autoindex_json_and_most", cfg(keys() + "\naws_s3_autoindex on;\naws_s3_autoindex_format json;\n"
                                    "aws_s3_autoindex_max_entries 1000000;",
                                    "aws_sign;\nlocation /raw/ { aws_s3_autoindex off; proxy_pass http://127.0.0.1:9; }")),
    ("status_in_two_places", cfg("location = /m { aws_auth_status; }", "aws_sign;",
                                 http=keys() + "\nserver { listen 127.0.0.1:9; aws_auth_status; }")),
]


def _mentions(line: str, name: str) -> bool:
    return re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", line) is not None


@pytest.mark.parametrize("conf, names", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_config_fails(make_nginx, conf, names):
    ng = make_nginx()
    ng.write_config(conf.replace("{port}", str(ng.port)))
    rc, out = ng.test_config()
    assert rc != 0, f"nginx -t accepted a bad config:\n{out}\n{ng.conf_text}"
    emerg = [line.replace(ng.module, "<module>") for line in out.splitlines() if "[emerg]" in line]
    assert emerg, f"no [emerg] line:\n{out}"
    assert any(_mentions(line, n) for line in emerg for n in names), (
        f"[emerg] does not name any of {names}:\n" + "\n".join(emerg)
    )


@pytest.mark.parametrize("conf", [c[1] for c in GOOD], ids=[c[0] for c in GOOD])
def test_good_config_passes(make_nginx, conf):
    ng = make_nginx()
    ng.write_config(conf.replace("{port}", str(ng.port)))
    rc, out = ng.test_config()
    assert rc == 0, f"nginx -t rejected a good config:\n{out}\n{ng.conf_text}"
    assert "[emerg]" not in out


@pytest.mark.parametrize(
    "extra, warned",
    [
        ("aws_region eu-west-1;", ["aws_region eu-west-1", '"us-east-1"']),
        ("aws_service es;", ["aws_service es", '"s3"']),
        ("aws_region us-east-1;\naws_service s3;", []),
    ],
    ids=["region", "service", "same"],
)
def test_region_or_service_other_than_the_keys_scope_warns(make_nginx, extra, warned):
    """Static keys sign for their scope's region and service: an aws_region
    or aws_service that says otherwise gets a [warn] line from nginx -t
    naming both (the configuration is still valid)."""
    ng = make_nginx()
    ng.write_config(cfg(keys() + "\n" + extra, "aws_sign;").replace("{port}", str(ng.port)))
    rc, out = ng.test_config()
    assert rc == 0, out
    warns = [line for line in out.splitlines() if "[warn]" in line and "scope" in line]
    if not warned:
        assert warns == [], out
        return
    assert len(warns) == 1, out
    assert all(w in warns[0] for w in warned), warns
