% Our own driver (not part of the original code): runs the original's late fusion
% (fusedActionPaths.m, as I02genFusedTubes.m calls it) on the two streams that
% make_fusion_fixtures.py wrote to WORK/dets (base, rgb) and WORK/dets_top (flow),
% then the original's trimming and evaluation.
% Usage: octave-cli --eval "fusion_reference('SRC', 'WORK', 'nwsum-plus', 0.25)"
function fusion_reference(src, work, fusiontype, fuseiouth)
  [opts, cfg] = reference_setup(src, work);
  opts.basedetDir = [work, '/dets/'];
  opts.topdetDir = [work, '/dets_top/'];
  opts.fusiontype = fusiontype;
  opts.fuseiouth = fuseiouth;
  fusedActionPaths(opts);
  reference_eval(work, opts, cfg);
end
