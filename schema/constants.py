"""Names every layer shares: the TF-GNN graph the model sees and the columns that key every artifact.

The model's subgraphs (modules/batches.py), the layer-wise embedder (modules/embedding.py), the convolution
(modules/layers.py) and the GraphSchema (schema/build.py) must agree on these, so they are defined once here.
"""

NODE_SET = "item"  # the one node set: items (contexts are walked over, never embedded)
EDGE_SET = "importance"  # neighbour -> item edges of the importance neighbourhoods
WEIGHT = "weight"  # the edge feature: the neighbour's L1-normalised importance alpha
NODE_ID = "node_id"  # contiguous int item id 0..N-1 (GraphGen), the key of every table

# The Transform-ed item features (modules/preprocessing/transform.py makes them, schema/build.py declares them):
MULTI_HOT_WIDTH = 64  # a categorical column's vocabulary is capped to this many values (+1 out-of-vocabulary slot)
TEXT_VOCAB_SIZE = 20000  # a text column's token vocabulary (+1 out-of-vocabulary id)
