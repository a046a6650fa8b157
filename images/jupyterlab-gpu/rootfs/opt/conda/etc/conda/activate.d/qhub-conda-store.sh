# conda-store's environments are mounted read-only at /opt/conda-store/<namespace>/envs/<environment>.
# Listing every namespace's envs folder in CONDA_ENVS_PATH lets `conda env list`, and so nb_conda_kernels,
# offer each of them as a kernel.
qhub_envs=""
for dir in /opt/conda-store/*/envs; do
  [ -d "$dir" ] && qhub_envs="${qhub_envs:+$qhub_envs:}$dir"
done
if [ -n "$qhub_envs" ]; then
  export CONDA_ENVS_PATH="${CONDA_ENVS_PATH:+$CONDA_ENVS_PATH:}$qhub_envs"
fi
unset qhub_envs dir
