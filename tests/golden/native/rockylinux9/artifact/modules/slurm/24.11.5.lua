-- Slurm 24.11.5 built by slurm-factory 0.1.0 for Rocky Linux 9 (rockylinux9).
-- The root is computed from this file's own location (<root>/modules/slurm/24.11.5.lua), so the tree
-- works wherever it is unpacked.
local root = myFileName():gsub("/modules/slurm/[^/]+$", "")

whatis("Name: Slurm")
whatis("Version: 24.11.5")
whatis("Description: Slurm workload manager (native build for Rocky Linux 9)")
help([[
Slurm 24.11.5 (Rocky Linux 9, native engine).
Root: the directory two levels above this modulefile's directory; SLURM_ROOT is set to it.
SLURM_CONF is left alone when it is already set or when <root>/etc/slurm.conf does not exist (configless).
Debug symbols: unpack the -debug.tar.gz companion over the tree, then in gdb
  set debug-file-directory <root>/lib/debug
]])

conflict("slurm")
setenv("SLURM_ROOT", root)
prepend_path("PATH", pathJoin(root, "bin"))
prepend_path("PATH", pathJoin(root, "sbin"))
prepend_path("MANPATH", pathJoin(root, "share/man"))
prepend_path("CPATH", pathJoin(root, "include"))
prepend_path("LIBRARY_PATH", pathJoin(root, "lib"))
-- slurm.pc (pkg-config slurm) and the Perl API (seff and sjobexitmod use it), where the tree has them.
if isDir(pathJoin(root, "lib/pkgconfig")) then
    prepend_path("PKG_CONFIG_PATH", pathJoin(root, "lib/pkgconfig"))
end
if isDir(pathJoin(root, "lib/perl5")) then
    prepend_path("PERL5LIB", pathJoin(root, "lib/perl5"))
end

-- pushenv keeps a SLURM_CONF set before loading and restores it on unload; without one, the tree's own
-- etc/slurm.conf is used when it exists (configless clusters have none and keep finding their controller).
local site_conf = pathJoin(root, "etc/slurm.conf")
if isFile(site_conf) then
    pushenv("SLURM_CONF", os.getenv("SLURM_CONF") or site_conf)
end
