% Our own driver (not part of the original code): the original's trimming and
% evaluation of the action paths in opts.actPathDir, as I01onlineTubes.m and
% I02genFusedTubes.m (gettubes) run them. Writes WORK/xmld_alpha<a>.mat and
% WORK/results.mat; returns the wall seconds per stage.
function timing = reference_eval(work, opts, cfg)
  actions = opts.actions;
  numActions = numel(actions);
  t0 = tic;
  paths = readALLactionPaths(opts.vidList, opts.actPathDir, 1);
  timing.read_paths = toc(t0);
  a = load(fullfile(work, 'finalAnnots.mat'));
  annot = a.annot;
  fid = fopen(opts.vidList, 'r');
  names = textscan(fid, '%s');
  fclose(fid);
  videos = names{1}';
  thresholds = [0.2, 0.5:0.05:0.95];
  alphas = double(cfg.alphas);
  results = zeros(numel(alphas) * numel(thresholds), 5);
  aps = zeros(numel(alphas) * numel(thresholds), numActions);
  row = 1;
  timing.smooth = zeros(1, numel(alphas));
  timing.convert = zeros(1, numel(alphas));
  timing.pr = zeros(numel(alphas), numel(thresholds));
  for alpha = alphas
    ia = find(alphas == alpha, 1);
    t0 = tic;
    smoothed = PARactionPathSmoother(paths, alpha * ones(numActions, 1), numActions);
    timing.smooth(ia) = toc(t0);
    t0 = tic;
    xmld = convert2eval(smoothed, 8, zeros(numActions, 1), 40, videos);
    timing.convert(ia) = toc(t0);
    save(fullfile(work, sprintf('xmld_alpha%g.mat', alpha)), 'xmld');
    for it = 1:numel(thresholds)
      th = thresholds(it);
      t0 = tic;
      [mAP, mIoU, acc, AP] = get_PR_curve(annot, xmld, videos, actions, th);
      timing.pr(ia, it) = toc(t0);
      results(row, :) = [alpha, th, mAP, mIoU, acc];
      aps(row, :) = AP';
      row = row + 1;
    end
  end
  save(fullfile(work, 'results.mat'), 'results', 'aps');
end
