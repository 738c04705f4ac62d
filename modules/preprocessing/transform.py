"""tf.Transform preprocessing of item features (the TFX Transform component loads this module file).

Input: GraphGen's item table (ingested item columns + node_id + train_degree). Output, per item, the tensors that
schema/build.py `transformed_features` declares and the TF-GNN node set `item` carries:
  numeric      -> z-score (missing imputed with the mean, so z = 0) and a `<col>_missing` indicator
  categorical  -> vocabulary (capped, 1 OOV slot) -> multi-hot of fixed width, e.g. genres
  text         -> lower-cased word tokens -> vocabulary ids (var-len), e.g. title tokens
  dense_vector -> the parsed float vector (zeros when missing)
  log_degree   -> z-scored log(1 + train degree)  (train split only: no leakage from held-out interactions)
Full-pass statistics (means, variances, vocabularies) are what tf.Transform is for; they are computed once over
all items with Beam and baked into the transform graph that training and serving share.
"""

import tensorflow as tf
import tensorflow_transform as tft

from schema.constants import MULTI_HOT_WIDTH, TEXT_VOCAB_SIZE


def _dense_scalar(x, default):
    """A [B] dense tensor from a FixedLen [B,1] tensor or a VarLen SparseTensor (missing -> default)."""
    if isinstance(x, tf.SparseTensor):
        x = tf.sparse.to_dense(tf.sparse.reset_shape(x, [x.dense_shape[0], 1]), default_value=default)
    return tf.reshape(x, [-1])


def _z_score(x, valid):
    """z-score over the valid entries only; invalid entries get 0 (the imputed mean)."""
    xf = tf.cast(x, tf.float32)
    zero = tf.zeros_like(xf)
    n = tft.sum(tf.cast(valid, tf.float32))
    mean = tft.sum(tf.where(valid, xf, zero)) / tf.maximum(n, 1.0)
    var = tft.sum(tf.where(valid, tf.square(xf - mean), zero)) / tf.maximum(n, 1.0)
    std = tf.sqrt(var)
    std = tf.where(std > 0, std, tf.ones_like(std))
    return tf.where(valid, (xf - mean) / std, zero)


def _tokens(s, separator=None):
    """SparseTensor of tokens: split on `separator` (categorical) or lower-cased words (text)."""
    if separator is None:
        s = tf.strings.regex_replace(tf.strings.lower(s), r"[^\w']+", " ")
        toks = tf.strings.split(s)
    else:
        toks = tf.strings.split(s, sep=separator)
        toks = tf.ragged.boolean_mask(toks, tf.strings.length(tf.strings.strip(toks)) > 0)
        toks = tf.strings.strip(toks)
    return toks.to_sparse()


def preprocessing_fn(inputs, custom_config):
    features = custom_config["features"]
    out = {"node_id": _dense_scalar(inputs["node_id"], tf.constant(-1, tf.int64))}
    deg = tf.cast(_dense_scalar(inputs["train_degree"], tf.constant(0, tf.int64)), tf.float32)
    out["log_degree"] = _z_score(tf.math.log1p(deg), tf.ones_like(deg, tf.bool))
    for col, f in sorted(features.items()):
        kind = f["kind"]
        if kind == "numeric":
            x = _dense_scalar(inputs[col], tf.constant(float("nan")))
            valid = tf.math.is_finite(x)
            out[col] = _z_score(x, valid)
            out[f"{col}_missing"] = 1.0 - tf.cast(valid, tf.float32)
        elif kind == "categorical":
            s = _dense_scalar(inputs[col], tf.constant(""))
            ids = tft.compute_and_apply_vocabulary(
                _tokens(s, f.get("separator") or "\x00"),
                top_k=MULTI_HOT_WIDTH,
                num_oov_buckets=1,
                vocab_filename=f"{col}_vocab",
            )
            # multi-hot: one_hot of each id (padding -1 -> all zeros), summed per row, clipped at 1 (repeats).
            dense = tf.sparse.to_dense(ids, default_value=-1)
            out[f"{col}_multi_hot"] = tf.minimum(
                tf.reduce_sum(tf.one_hot(dense, MULTI_HOT_WIDTH + 1, dtype=tf.float32), axis=1), 1.0
            )
        elif kind == "text":
            s = _dense_scalar(inputs[col], tf.constant(""))
            out[f"{col}_tokens"] = tft.compute_and_apply_vocabulary(
                _tokens(s), top_k=TEXT_VOCAB_SIZE, num_oov_buckets=1, vocab_filename=f"{col}_vocab"
            )
        elif kind == "dense_vector":
            dim = int(f["dim"])
            s = _dense_scalar(inputs[col], tf.constant(""))
            parts = tf.strings.split(s, sep=f.get("separator", " "))
            ok = tf.equal(parts.row_lengths(), dim)  # ingest blanked malformed vectors: those become zeros
            strs = tf.where(ok[:, None], parts.to_tensor(default_value="0", shape=[None, dim]), "0")
            out[col] = tf.strings.to_number(strs, tf.float32)
        else:
            raise ValueError(f"feature {col!r}: unknown kind {kind!r}")
    return out
