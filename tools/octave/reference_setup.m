% Our own driver (not part of the original code): the original's folders on the
% path (as I01onlineTubes.m) and the opts fields that the fixture's config.mat gives.
function [opts, cfg] = reference_setup(src, work)
  subdirs = {'gentube', 'actionpath', 'eval', 'utils'};
  for k = 1:numel(subdirs)
    addpath(genpath(fullfile(src, subdirs{k})));
  end
  save_default_options('-mat7-binary');
  cfg = load(fullfile(work, 'config.mat'));
  opts = struct();
  opts.costtype = 'score';
  opts.gap = 3;
  opts.iouThresh = double(cfg.iou_thresh);
  opts.actions = cellstr(cfg.actions);
  opts.vidList = [work, '/videos.txt'];
  opts.actPathDir = [work, '/paths/'];
  createdires({opts.actPathDir}, opts.actions);
end
