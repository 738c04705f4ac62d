"""tf.Transform preprocessing, in a folder of its own: TFX packages *every* .py file beside a Transform
module_file into the component's ephemeral wheel and hashes them for the cache, so keeping transform.py apart
from the model code means a model change neither re-runs Transform nor ships model modules as top-level names."""
