% Our own driver (not part of the original code): runs the original ROAD
% online-tubes functions on the inputs that make_fixtures.py wrote to WORK.
% Usage: octave-cli --eval "reference('SRC', 'WORK')"
function reference(src, work)
  [opts, cfg] = reference_setup(src, work);
  opts.detDir = [work, '/dets/'];
  % wall seconds per stage, for bench/bench_tubes_octave.py (tic/toc; not used by the fixtures)
  t0 = tic;
  actionPaths(opts);
  paths_seconds = toc(t0);
  timing = reference_eval(work, opts, cfg);
  timing.paths = paths_seconds;
  % the original frame-mAP (frameAp.m, set-up patched by make_fixtures.py): writes frameap.mat
  t0 = tic;
  frameAp(work);
  timing.frameap = toc(t0);
  save(fullfile(work, 'timing.mat'), '-struct', 'timing');
end
