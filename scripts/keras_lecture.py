"""The lecture's job as a plain Keras 3 script (torch backend), what a student would write: read the
raw MNIST files, train 784-500-500-500-10 sigmoid with SGD 0.1, batch 100, 20 epochs on the first 10k
images, the test set evaluated after every epoch. scripts/bench.py times it as a whole process
against the suite's own command; it prints its fit() time and test accuracy as one JSON line.

    python scripts/keras_lecture.py ../shared/datasets 0
"""

import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402


def read_idx(path: str, header: int) -> np.ndarray:
    return np.fromfile(path, dtype=np.uint8, offset=header)


def main(root: str, seed: int) -> None:
    raw = os.path.join(root, "MNIST", "raw")
    x = read_idx(os.path.join(raw, "train-images-idx3-ubyte"), 16).reshape(-1, 784)[:10000] / np.float32(255)
    y = keras.utils.to_categorical(read_idx(os.path.join(raw, "train-labels-idx1-ubyte"), 8)[:10000], 10)
    xt = read_idx(os.path.join(raw, "t10k-images-idx3-ubyte"), 16).reshape(-1, 784) / np.float32(255)
    yt = keras.utils.to_categorical(read_idx(os.path.join(raw, "t10k-labels-idx1-ubyte"), 8), 10)
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((784,))] + [keras.layers.Dense(500, activation="sigmoid") for _ in range(3)]
                             + [keras.layers.Dense(10, activation="softmax")])
    model.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.SGD(learning_rate=0.1), metrics=["accuracy"])
    started = time.perf_counter()
    history = model.fit(x, y, batch_size=100, epochs=20, shuffle=True, validation_data=(xt, yt), verbose=0)
    print(json.dumps({"fit_seconds": time.perf_counter() - started, "test_acc": history.history["val_accuracy"][-1],
                      "keras": keras.__version__}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
