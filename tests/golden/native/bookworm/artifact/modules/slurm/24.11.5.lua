-- Slurm 24.11.5 built by slurm-factory 0.1.0 for Debian 12 (bookworm).
-- The root is computed from this file's own location (<root>/modules/slurm/24.11.5.lua), so the tree
-- works wherever it is unpacked.
local root = myFileName():gsub("/modules/slurm/[^/]+$", "")

whatis("Name: Slurm")
whatis("Version: 24.11.5")
whatis("Description: Slurm workload manager (native build for Debian 12)")
help([[
Slurm 24.11.5 (Debian 12, native engine).
Root: the directory two levels above this modulefile's directory; SLURM_ROOT is set to it.
SLURM_CONF is left alone when it is already set or when <root>/etc/slurm.conf does not exist (configless).
]])

conflict("slurm")
setenv("SLURM_ROOT", root)
prepend_path("PATH", pathJoin(root, "bin"))
prepend_path("PATH", pathJoin(root, "sbin"))
prepend_path("MANPATH", pathJoin(root, "share/man"))
prepend_path("PKG_CONFIG_PATH", pathJoin(root, "lib/pkgconfig"))
prepend_path("CPATH", pathJoin(root, "include"))
prepend_path("LIBRARY_PATH", pathJoin(root, "lib"))

local site_conf = pathJoin(root, "etc/slurm.conf")
if os.getenv("SLURM_CONF") == nil and isFile(site_conf) then
    setenv("SLURM_CONF", site_conf)
end
