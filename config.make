# Makefile rules for the Rust part (sourced by nginx's auto/make, see config).
#
# cargo knows when the crate needs rebuilding; make does not, so the rule
# always runs cargo, which returns at once when nothing changed. The build
# uses the nginx tree being built (absolute NGINX_BUILD_DIR), without the
# crate's export-modules feature: nginx writes the module table itself.
# cargo runs in the module's directory, so that its .cargo/config.toml
# applies (in the source release: the vendored crates, no network).

aws_auth_abs_objs=$NGX_OBJS
case "$aws_auth_abs_objs" in
    /*) ;;
    *) aws_auth_abs_objs="\$\$top/$NGX_OBJS" ;;
esac

aws_auth_abs_target=$aws_auth_target_dir
case "$aws_auth_abs_target" in
    /*) ;;
    *) aws_auth_abs_target="\$\$top/$aws_auth_target_dir" ;;
esac

cat << END                                                   >> $NGX_MAKEFILE

$aws_auth_lib: ngx_http_aws_auth_module_cargo

ngx_http_aws_auth_module_cargo:
	top="\$\$PWD"; cd "$ngx_addon_dir" && \\
	NGINX_BUILD_DIR="$aws_auth_abs_objs" NGINX_SOURCE_DIR="\$\$top" \\
	${NGX_CARGO:-cargo} rustc --release --lib --crate-type staticlib \\
		--no-default-features \\
		--manifest-path Cargo.toml \\
		--target-dir "$aws_auth_abs_target"

.PHONY: ngx_http_aws_auth_module_cargo

END

# (config accepts only --add-dynamic-module)
cat << END                                                   >> $NGX_MAKEFILE
$NGX_OBJS${ngx_dirsep}ngx_http_aws_auth_module$ngx_modext: $aws_auth_lib

END
