"""Sample-quality metrics: Inception features (pytorch-fid's network), FID statistics and
distance, Inception Score, KID, precision/recall, and the generator evaluation that training,
`hamgan eval` and the tests share.

Modules are imported on use (``from hamgan.metrics.fid import frechet_distance``) so that
importing this package does not build torchvision's Inception."""
