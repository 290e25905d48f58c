"""Generate sample student submissions for the chest X-ray assignment.

The notebooks imitate what students hand in for the class-imbalance part of
the assignment: two graded functions, ``compute_class_freqs`` and
``get_weighted_loss``, surrounded by the usual import, data-loading, plotting,
model-building and training cells.  Each file name states the expected
outcome, and ``manifest.json`` records the verdict the grader should reach.

Run from the repository root (or anywhere)::

    python tools/make_samples.py

The output is deterministic, so re-running it leaves the files unchanged.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from textwrap import dedent, indent

import nbformat
from nbformat import v3, v4

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "student_submissions"
MANIFEST = OUT_DIR / "manifest.json"

FREQS = "compute_class_freqs"
LOSS = "get_weighted_loss"


def src(text: str) -> str:
    """Dedent a triple-quoted block and drop its surrounding blank lines."""
    return dedent(text).strip("\n")


# --------------------------------------------------------------------------
# Kernel specs seen in submissions
# --------------------------------------------------------------------------

KERNELS = {
    "python3": {
        "display_name": "Python 3",
        "language": "python",
        "name": "python3",
    },
    "ipykernel": {
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "name": "python3",
    },
    "conda": {
        "display_name": "Python [conda env:ai]",
        "language": "python",
        "name": "conda-env-ai-py",
    },
    "tfgpu": {
        "display_name": "TF 2 GPU",
        "language": "python",
        "name": "tf2-gpu",
    },
}


def language_info(version: str) -> dict:
    return {
        "codemirror_mode": {"name": "ipython", "version": 3},
        "file_extension": ".py",
        "mimetype": "text/x-python",
        "name": "python",
        "nbconvert_exporter": "python",
        "pygments_lexer": "ipython3",
        "version": version,
    }


# --------------------------------------------------------------------------
# Import cells
# --------------------------------------------------------------------------

IMPORTS_KERAS = src(
    """
    import numpy as np
    import pandas as pd
    import seaborn as sns
    import matplotlib.pyplot as plt
    %matplotlib inline

    from keras.preprocessing.image import ImageDataGenerator
    from keras.applications.densenet import DenseNet121
    from keras.layers import Dense, GlobalAveragePooling2D
    from keras.models import Model
    from keras import backend as K
    from keras.models import load_model

    import util
    from public_tests import *
    from test_utils import *
    """
)

IMPORTS_TF = src(
    """
    import numpy as np
    import pandas as pd
    import seaborn as sns
    import matplotlib.pyplot as plt
    import tensorflow as tf
    %matplotlib inline

    from tensorflow.keras.preprocessing.image import ImageDataGenerator
    from tensorflow.keras.applications.densenet import DenseNet121
    from tensorflow.keras.layers import Dense, GlobalAveragePooling2D
    from tensorflow.keras.models import Model, load_model
    from tensorflow.keras import backend as K

    import util
    from public_tests import *
    from test_utils import *
    """
)

IMPORTS_MIXED = src(
    """
    import numpy as np
    import pandas as pd
    import seaborn as sns
    import matplotlib.pyplot as plt
    %matplotlib inline

    import tensorflow as tf
    from keras.preprocessing.image import ImageDataGenerator
    from keras.applications.densenet import DenseNet121
    from keras.layers import Dense, GlobalAveragePooling2D
    from keras.models import Model
    from tensorflow.keras import backend as K
    from keras.models import load_model

    import util
    from public_tests import *
    from test_utils import *
    """
)

IMPORTS_MAGIC = src(
    """
    !pip install -q seaborn
    %load_ext autoreload
    %autoreload 2

    import numpy as np
    import pandas as pd
    import seaborn as sns
    import matplotlib.pyplot as plt
    %matplotlib inline

    from keras.preprocessing.image import ImageDataGenerator
    from keras.applications.densenet import DenseNet121
    from keras.layers import Dense, GlobalAveragePooling2D
    from keras.models import Model
    from keras import backend as K
    from keras.models import load_model

    import util
    from public_tests import *
    from test_utils import *
    """
)

# --------------------------------------------------------------------------
# Markdown written by the course (paraphrased for these samples)
# --------------------------------------------------------------------------

MD_TITLE = src(
    """
    # Chest X-Ray Classification with Deep Learning

    In this assignment you will train a network that looks at a chest X-ray
    and predicts, for each of 14 conditions, whether it is present. Medical
    datasets are rarely balanced: most conditions appear in only a small share
    of the images, and the first part of the assignment deals with that.
    """
)

MD_OUTLINE = src(
    """
    ## Outline

    - [1. Packages](#1)
    - [2. Loading the data](#2)
    - [3. Class imbalance](#3)
        - [Exercise 1 - compute_class_freqs](#ex-1)
        - [Exercise 2 - get_weighted_loss](#ex-2)
    - [4. The DenseNet121 model](#4)
    - [5. Training](#5)
    """
)

MD_PACKAGES = src(
    """
    <a name='1'></a>
    ## 1. Packages

    Run the next cell to import everything this notebook needs. `util`,
    `public_tests` and `test_utils` are helper modules that come with the
    assignment files.
    """
)

MD_DATA = src(
    """
    <a name='2'></a>
    ## 2. Loading the data

    We work with a small subset of the NIH chest X-ray collection. Every row
    of the CSV files names one image and holds a 0/1 column per condition.
    """
)

MD_GENERATORS = src(
    """
    ### 2.1 Image generators

    The generators read images from disk in batches and rescale each image so
    that its pixels have zero mean and unit standard deviation.
    """
)

MD_IMBALANCE = src(
    """
    <a name='3'></a>
    ## 3. Class imbalance

    Plot how often each condition is labelled positive in the training set.
    A few conditions show up in only a handful of images.
    """
)

MD_EX1 = src(
    """
    <a name='ex-1'></a>
    ### Exercise 1 - compute_class_freqs

    Fill in `compute_class_freqs`. For each class return the fraction of
    examples that are positive and the fraction that are negative. Both
    results must be NumPy arrays with one entry per class.
    """
)

MD_AFTER_FREQS = src(
    """
    Now compute the frequencies on the real training labels and compare the
    positive and negative share of every class.
    """
)

MD_WEIGHTS = src(
    r"""
    With plain cross-entropy the many negative examples dominate the loss.
    Weighting every positive example by the negative frequency and every
    negative example by the positive frequency makes both groups contribute
    the same amount:

    $$w_{pos} \times freq_{p} = w_{neg} \times freq_{n}$$
    """
)

MD_EX2 = src(
    r"""
    <a name='ex-2'></a>
    ### Exercise 2 - get_weighted_loss

    Fill in `get_weighted_loss`. It returns a function
    `weighted_loss(y_true, y_pred)` that, for every class, takes the mean of
    the weighted cross-entropy over the batch, and adds the per-class means:

    $$\mathcal{L} = \sum_{i} -\frac{1}{N} \sum_{n} \Big( w_{p,i}\, y_{n,i}
    \log(f_i(x_n) + \epsilon) + w_{n,i} (1 - y_{n,i})
    \log(1 - f_i(x_n) + \epsilon) \Big)$$

    Use Keras backend operations such as `K.mean` and `K.log` so that the
    result is a tensor. The small constant `epsilon` keeps the logarithm away
    from zero.
    """
)

MD_MODEL = src(
    """
    <a name='4'></a>
    ## 4. DenseNet121

    Start from a DenseNet121 pre-trained on ImageNet, add global average
    pooling and a sigmoid layer with one unit per class, and compile the
    model with the weighted loss.
    """
)

MD_TRAIN = src(
    """
    <a name='5'></a>
    ## 5. Training

    Training on the whole dataset takes many hours on a GPU, so the cell
    below only runs a few short epochs. You may skip it and load the provided
    weights instead.
    """
)

# --------------------------------------------------------------------------
# Data-loading, plotting, model and training cells
# --------------------------------------------------------------------------

CLASS_NAMES = src(
    """
    class_names = ['Cardiomegaly', 'Emphysema', 'Effusion', 'Hernia',
                   'Infiltration', 'Mass', 'Nodule', 'Atelectasis',
                   'Pneumothorax', 'Pleural_Thickening', 'Pneumonia',
                   'Fibrosis', 'Edema', 'Consolidation']
    """
)

READ_CSV = src(
    """
    train_df = pd.read_csv("data/nih/train-small.csv")
    valid_df = pd.read_csv("data/nih/valid-small.csv")
    test_df = pd.read_csv("data/nih/test.csv")

    print(train_df.shape, valid_df.shape, test_df.shape)
    """
)

GENERATOR_DEF = src(
    """
    IMAGE_DIR = "data/nih/images-small/"


    def make_generator(df, image_dir, x_col, y_cols, shuffle=True,
                       batch_size=8, seed=1, target_w=320, target_h=320):
        \"\"\"Batches of images normalised one by one, with their labels.\"\"\"
        image_generator = ImageDataGenerator(
            samplewise_center=True,
            samplewise_std_normalization=True)
        return image_generator.flow_from_dataframe(
            dataframe=df,
            directory=image_dir,
            x_col=x_col,
            y_col=y_cols,
            class_mode="raw",
            batch_size=batch_size,
            shuffle=shuffle,
            seed=seed,
            target_size=(target_w, target_h))
    """
)

GENERATOR_USE = src(
    """
    train_generator = make_generator(train_df, IMAGE_DIR, "Image", class_names)
    valid_generator = make_generator(valid_df, IMAGE_DIR, "Image", class_names,
                                     shuffle=False)
    """
)

GENERATOR_USE_LABELS = GENERATOR_USE + "\nlabels = train_generator.labels"

GENERATOR_OUT = (
    "Found 1000 validated image filenames.\n"
    "Found 200 validated image filenames.\n"
)

PLOT_RAW = src(
    """
    plt.xticks(rotation=90)
    plt.bar(x=class_names, height=np.mean(train_generator.labels, axis=0))
    plt.title("Share of positive labels per class")
    plt.show()
    """
)

TEST_FREQS = "compute_class_freqs_test(compute_class_freqs)"

CALL_FREQS = src(
    """
    freq_pos, freq_neg = compute_class_freqs(train_generator.labels)
    freq_pos
    """
)

CALL_FREQS_LABELS = src(
    """
    freq_pos, freq_neg = compute_class_freqs(labels)
    freq_pos
    """
)

FREQ_POS_REPR = (
    "array([0.026, 0.013, 0.128, 0.002, 0.175, 0.045, 0.054, 0.106, 0.038,\n"
    "       0.021, 0.01 , 0.014, 0.016, 0.033])"
)

PLOT_FREQS = src(
    """
    freq_table = pd.DataFrame({"Class": class_names, "Label": "Positive",
                               "Value": freq_pos})
    neg_table = pd.DataFrame({"Class": class_names, "Label": "Negative",
                              "Value": freq_neg})
    freq_table = pd.concat([freq_table, neg_table], ignore_index=True)
    plt.xticks(rotation=90)
    ax = sns.barplot(x="Class", y="Value", hue="Label", data=freq_table)
    """
)

WEIGHTS = src(
    """
    pos_weights = freq_neg
    neg_weights = freq_pos
    pos_contribution = freq_pos * pos_weights
    neg_contribution = freq_neg * neg_weights
    """
)

PLOT_WEIGHTS = src(
    """
    contrib = pd.DataFrame({"Class": class_names, "Label": "Positive",
                            "Value": pos_contribution})
    contrib = pd.concat([contrib,
                         pd.DataFrame({"Class": class_names,
                                       "Label": "Negative",
                                       "Value": neg_contribution})])
    plt.xticks(rotation=90)
    sns.barplot(x="Class", y="Value", hue="Label", data=contrib)
    """
)

TEST_LOSS = "get_weighted_loss_test(get_weighted_loss, epsilon=1)"

TEST_LOSS_VAR = src(
    """
    epsilon = 1
    get_weighted_loss_test(get_weighted_loss, epsilon=epsilon)
    """
)

OWN_LOSS_CHECK = src(
    """
    # my own check before running the official test
    w_p = np.array([0.25, 0.25, 0.5])
    w_n = np.array([0.75, 0.75, 0.5])
    y_true_chk = K.constant(np.array([[1, 1, 1], [1, 1, 0], [0, 1, 0], [1, 0, 1]]))
    y_pred_chk = K.constant(0.7 * np.ones((4, 3)))
    L = get_weighted_loss(w_p, w_n, epsilon=1)(y_true_chk, y_pred_chk)
    print(L.numpy())
    """
)

MODEL = src(
    """
    base_model = DenseNet121(weights='models/nih/densenet.hdf5',
                             include_top=False)

    x = base_model.output
    x = GlobalAveragePooling2D()(x)
    predictions = Dense(len(class_names), activation="sigmoid")(x)

    model = Model(inputs=base_model.input, outputs=predictions)
    model.compile(optimizer='adam',
                  loss=get_weighted_loss(pos_weights, neg_weights))
    """
)

TRAIN = src(
    """
    history = model.fit(train_generator,
                        validation_data=valid_generator,
                        steps_per_epoch=100,
                        validation_steps=25,
                        epochs=3)

    plt.plot(history.history['loss'])
    plt.ylabel("loss")
    plt.xlabel("epoch")
    plt.title("Training loss curve")
    plt.show()
    """
)

LOAD_WEIGHTS = 'model.load_weights("models/nih/pretrained_model.h5")'

# --------------------------------------------------------------------------
# Graded cells
# --------------------------------------------------------------------------

FREQS_CELL = src(
    '''
    # UNQ_C1 (UNIQUE CELL IDENTIFIER, DO NOT EDIT)
    # GRADED FUNCTION: compute_class_freqs
    def compute_class_freqs(labels):
        """
        Find, for every class, how often it is labelled positive and negative.

        Args:
            labels (np.array): 0/1 matrix of shape (num_examples, num_classes);
                one row per image, one column per condition.

        Returns:
            positive_frequencies (np.array): shape (num_classes,), the share
                of examples in which each class is present.
            negative_frequencies (np.array): shape (num_classes,), the share
                of examples in which each class is absent.
        """
        ### START CODE HERE (REPLACE INSTANCES OF 'None' with your code) ###
    @BODY@
        ### END CODE HERE ###
        return positive_frequencies, negative_frequencies
    '''
)

LOSS_CELL = src(
    '''
    # UNQ_C2 (UNIQUE CELL IDENTIFIER, DO NOT EDIT)
    # GRADED FUNCTION: get_weighted_loss
    def @NAME@(pos_weights, neg_weights, epsilon=1e-7):
        """
        Build a class-weighted binary cross-entropy loss for Keras.

        Args:
            pos_weights (np.array): one weight per class for positive labels.
            neg_weights (np.array): one weight per class for negative labels.
            epsilon (float): small number added inside each logarithm so that
                it is never evaluated at zero.

        Returns:
            weighted_loss (function): loss function taking (y_true, y_pred).
        """
        def weighted_loss(y_true, y_pred):
            """
            Weighted cross-entropy: mean over the batch, summed over classes.

            Args:
                y_true (Tensor): true labels, shape (batch_size, num_classes).
                y_pred (Tensor): predicted probabilities, same shape.

            Returns:
                loss (Tensor): scalar loss for the batch.
            """
            # running total over the classes
            loss = 0.0

            ### START CODE HERE (REPLACE INSTANCES OF 'None' with your code) ###
    @BODY@
            ### END CODE HERE ###
        return weighted_loss
    '''
)


def freqs_cell(body: str) -> str:
    """The UNQ_C1 cell with ``body`` as the student's code."""
    return FREQS_CELL.replace("@BODY@", indent(src(body), " " * 4))


def loss_cell(body: str, name: str = LOSS, prefix: str = "") -> str:
    """The UNQ_C2 cell with ``body`` as the code inside ``weighted_loss``."""
    cell = LOSS_CELL.replace("@BODY@", indent(src(body), " " * 8))
    return prefix + cell.replace("@NAME@", name)


# ---- compute_class_freqs bodies (indented as inside the function) --------

FREQS_MEAN = """
        # the mean of a 0/1 column is the share of ones in it
        positive_frequencies = np.mean(labels, axis=0)
        negative_frequencies = 1 - positive_frequencies
"""

FREQS_SUM_SHAPE = """
        # total number of examples
        N = labels.shape[0]

        positive_frequencies = np.sum(labels, axis=0) / labels.shape[0]
        negative_frequencies = (N - np.sum(labels, axis=0)) / N
"""

FREQS_COUNT_NONZERO = """
        n_examples = len(labels)

        positive_frequencies = np.count_nonzero(labels, axis=0) / n_examples
        negative_frequencies = np.count_nonzero(labels == 0, axis=0) / n_examples
"""

FREQS_LOOP = """
        N, num_classes = labels.shape

        positive_frequencies = np.zeros(num_classes)
        for c in range(num_classes):
            positive_frequencies[c] = np.sum(labels[:, c]) / N

        negative_frequencies = 1.0 - positive_frequencies
"""

FREQS_METHOD = """
        positive_frequencies = labels.mean(axis=0)
        negative_frequencies = 1.0 - labels.mean(axis=0)
"""

FREQS_WRONG_AXIS = """
        # total number of patients
        N = labels.shape[0]

        positive_frequencies = np.sum(labels, axis=1) / N
        negative_frequencies = 1 - positive_frequencies
"""

FREQS_NONE = """
        # total number of patients (rows)
        N = labels.shape[0]

        positive_frequencies = None
        negative_frequencies = None
"""

FREQS_GLOBAL = """
        # number of training images
        N = len(train_df)

        positive_frequencies = np.sum(labels, axis=0) / N
        negative_frequencies = 1 - positive_frequencies
"""

# ---- weighted_loss bodies (indented as inside the inner function) --------

LOSS_K_LOOP = """
            for i in range(len(pos_weights)):
                # mean weighted loss of class i over the batch
                loss += -K.mean(
                    pos_weights[i] * y_true[:, i] * K.log(y_pred[:, i] + epsilon)
                    + neg_weights[i] * (1 - y_true[:, i])
                    * K.log(1 - y_pred[:, i] + epsilon))

            return loss
"""

LOSS_TF_OPS = """
            for i in range(len(pos_weights)):
                pos_term = pos_weights[i] * y_true[:, i] * tf.math.log(
                    y_pred[:, i] + epsilon)
                neg_term = neg_weights[i] * (1 - y_true[:, i]) * tf.math.log(
                    1 - y_pred[:, i] + epsilon)
                loss += -tf.reduce_mean(pos_term + neg_term)

            return loss
"""

LOSS_VECTORISED = """
            # all classes at once: mean over examples, then sum over classes
            loss = K.sum(K.mean(-(pos_weights * y_true * K.log(y_pred + epsilon)
                                  + neg_weights * (1 - y_true)
                                  * K.log(1 - y_pred + epsilon)), axis=0))
            return loss
"""

LOSS_MINUS_EQUALS = """
            for i in range(len(pos_weights)):
                loss -= K.mean(
                    pos_weights[i] * y_true[:, i] * K.log(epsilon + y_pred[:, i])
                    + neg_weights[i] * (1 - y_true[:, i])
                    * K.log(epsilon + 1 - y_pred[:, i]))

            return loss
"""

LOSS_K_SUM = """
            for i in range(len(pos_weights)):
                loss += -K.sum(
                    pos_weights[i] * y_true[:, i] * K.log(y_pred[:, i] + epsilon)
                    + neg_weights[i] * (1 - y_true[:, i])
                    * K.log(1 - y_pred[:, i] + epsilon))

            return loss
"""

LOSS_NO_EPSILON = """
            for i in range(len(pos_weights)):
                loss += -K.mean(
                    pos_weights[i] * y_true[:, i] * K.log(y_pred[:, i])
                    + neg_weights[i] * (1 - y_true[:, i]) * K.log(1 - y_pred[:, i]))

            return loss
"""

LOSS_NUMPY = """
            for i in range(len(pos_weights)):
                pos_part = pos_weights[i] * y_true[:, i] * np.log(
                    y_pred[:, i] + epsilon)
                neg_part = neg_weights[i] * (1 - y_true[:, i]) * np.log(
                    1 - y_pred[:, i] + epsilon)
                loss += -np.mean(pos_part + neg_part)

            return np.float32(loss)
"""

LOSS_THREE_MISTAKES = """
            for i in range(len(pos_weights)):
                loss += -np.sum(pos_weights[i] * y_true[:, i] * np.log(y_pred[:, i])
                                + neg_weights[i] * (1 - y_true[:, i])
                                * np.log(1 - y_pred[:, i]))

            return np.float32(loss)
"""

LOSS_SWAPPED = """
            for i in range(len(pos_weights)):
                loss += -K.mean(
                    neg_weights[i] * y_true[:, i] * K.log(y_pred[:, i] + epsilon)
                    + pos_weights[i] * (1 - y_true[:, i])
                    * K.log(1 - y_pred[:, i] + epsilon))

            return loss
"""

LOSS_SYNTAX_ERROR = """
            for i in range(len(pos_weights)):
                pos_loss = pos_weights[i] * y_true[:, i] * K.log(y_pred[:, i] + epsilon
                neg_loss = neg_weights[i] * (1 - y_true[:, i]) * K.log(
                    1 - y_pred[:, i] + epsilon)
                loss += -K.mean(pos_loss + neg_loss)

            return loss
"""

LOSS_NONE = """
            for i in range(len(pos_weights)):
                # add the mean weighted loss of class i to the total
                loss += None

            return loss
"""

# --------------------------------------------------------------------------
# Outputs the students would have seen
# --------------------------------------------------------------------------

OUT_FREQS_PASS = ("stream", "\x1b[92m All tests passed.\n")
OUT_LOSS_PASS = (
    "stream",
    "Loss with y_pred = 0.7: -0.4956203\n"
    "Loss with y_pred = 0.3: -0.4956203\n"
    "\x1b[92m All tests passed.\n",
)


def out_error(ename: str, evalue: str, line: str) -> tuple:
    return (
        "error",
        ename,
        evalue,
        [
            "-" * 75,
            f"{ename}                                 Traceback "
            "(most recent call last)",
            line,
            f"{ename}: {evalue}",
        ],
    )


# --------------------------------------------------------------------------
# Notebook assembly
# --------------------------------------------------------------------------


def code(source: str, *outputs: tuple, run: bool = True) -> dict:
    return {"kind": "code", "source": source, "outputs": list(outputs),
            "run": run}


def md(source: str) -> dict:
    return {"kind": "markdown", "source": source}


def _outputs(spec: tuple | None) -> tuple:
    return () if spec is None else (spec,)


def standard_cells(
    *,
    imports: str,
    freqs: str,
    loss: str,
    freqs_out: tuple | None = OUT_FREQS_PASS,
    loss_out: tuple | None = OUT_LOSS_PASS,
    loss_cell_out: tuple | None = None,
    use_labels_var: bool = False,
    own_check: bool = False,
    plot_weights: bool = True,
    loss_test: str = TEST_LOSS,
    after_loss_test: list | None = None,
    after_model: list | None = None,
    train_run: bool = False,
    load_weights: bool = True,
) -> list[dict]:
    """The usual layout of a submission, with the graded cells plugged in."""
    gen_use = GENERATOR_USE_LABELS if use_labels_var else GENERATOR_USE
    call = CALL_FREQS_LABELS if use_labels_var else CALL_FREQS
    cells = [
        md(MD_TITLE),
        md(MD_OUTLINE),
        md(MD_PACKAGES),
        code(imports),
        md(MD_DATA),
        code(READ_CSV, ("stream", "(1000, 16) (200, 16) (420, 16)\n")),
        code(CLASS_NAMES),
        md(MD_GENERATORS),
        code(GENERATOR_DEF),
        code(gen_use, ("stream", GENERATOR_OUT)),
        md(MD_IMBALANCE),
        code(PLOT_RAW),
        md(MD_EX1),
        code(freqs),
        code(TEST_FREQS, *_outputs(freqs_out)),
        md(MD_AFTER_FREQS),
        code(call, ("result", FREQ_POS_REPR)),
        code(PLOT_FREQS),
        md(MD_WEIGHTS),
        code(WEIGHTS),
    ]
    if plot_weights:
        cells.append(code(PLOT_WEIGHTS))
    cells += [md(MD_EX2), code(loss, *_outputs(loss_cell_out))]
    if own_check:
        cells.append(code(OWN_LOSS_CHECK, ("stream", "-0.4956203\n")))
    cells.append(code(loss_test, *_outputs(loss_out)))
    cells += after_loss_test or []
    cells += [md(MD_MODEL), code(MODEL)]
    cells += after_model or []
    cells += [md(MD_TRAIN), code(TRAIN, run=train_run)]
    if load_weights:
        cells.append(code(LOAD_WEIGHTS))
    return cells


def cell_id(stem: str, index: int) -> str:
    return hashlib.sha1(f"{stem}:{index}".encode()).hexdigest()[:8]


def v4_output(spec: tuple, count: int | None) -> dict:
    kind = spec[0]
    if kind == "stream":
        return v4.new_output("stream", name="stdout", text=spec[1])
    if kind == "result":
        return v4.new_output("execute_result", data={"text/plain": spec[1]},
                             execution_count=count)
    _, ename, evalue, traceback = spec
    return v4.new_output("error", ename=ename, evalue=evalue,
                         traceback=traceback)


def build_v4(stem: str, cells: list[dict], *, kernel: str, minor: int = 5,
             executed: bool = True, py: str = "3.7.6") -> dict:
    nb = v4.new_notebook()
    nb.nbformat_minor = minor
    nb.metadata = {
        "kernelspec": KERNELS[kernel],
        "language_info": language_info(py),
    }
    count = 0
    for index, spec in enumerate(cells):
        if spec["kind"] == "markdown":
            cell = v4.new_markdown_cell(spec["source"])
        else:
            cell = v4.new_code_cell(spec["source"])
            if executed and spec["run"]:
                count += 1
                cell.execution_count = count
                cell.outputs = [v4_output(o, count) for o in spec["outputs"]]
        if minor >= 5:
            cell.id = cell_id(stem, index)
        else:
            del cell["id"]
        nb.cells.append(cell)
    return nb


def v3_output(spec: tuple, count: int) -> dict:
    kind = spec[0]
    if kind == "stream":
        return v3.new_output("stream", output_text=spec[1], stream="stdout")
    if kind == "result":
        return v3.new_output("pyout", output_text=spec[1], prompt_number=count)
    _, ename, evalue, traceback = spec
    return v3.new_output("pyerr", ename=ename, evalue=evalue,
                         traceback=traceback)


def build_v3(stem: str, cells: list[dict]) -> dict:
    """Old IPython 2 layout: heading cells and a single worksheet."""
    out = []
    count = 0
    for spec in cells:
        if spec["kind"] == "markdown":
            text = spec["source"]
            lines = text.split("\n")
            if lines[0].startswith("<a name="):
                lines = lines[1:]
            if lines[0].startswith("#"):
                level = len(lines[0]) - len(lines[0].lstrip("#"))
                heading = lines[0][level:].strip()
                out.append(v3.new_heading_cell(heading, level=level))
                rest = "\n".join(lines[1:]).strip("\n")
                if rest:
                    out.append(v3.new_text_cell("markdown", source=rest))
            else:
                out.append(v3.new_text_cell("markdown", source=text))
            continue
        if spec["run"]:
            count += 1
            outputs = [v3_output(o, count) for o in spec["outputs"]]
            out.append(v3.new_code_cell(input=spec["source"],
                                        prompt_number=count, outputs=outputs))
        else:
            out.append(v3.new_code_cell(input=spec["source"]))
    nb = v3.new_notebook(metadata=v3.new_metadata(name=stem))
    nb.worksheets.append(v3.new_worksheet(cells=out))
    return nb


def serialise(nb: dict) -> str:
    captured: dict = {}
    text = nbformat.writes(nb, capture_validation_error=captured)
    if "ValidationError" in captured:
        raise RuntimeError(f"invalid notebook: {captured['ValidationError']}")
    return text if text.endswith("\n") else text + "\n"


# --------------------------------------------------------------------------
# The submissions
# --------------------------------------------------------------------------


def verdict(*diagnoses: str) -> dict:
    return {"passed": not diagnoses, "diagnoses": sorted(diagnoses)}


def graded(freqs: tuple = (), loss: tuple = ()) -> dict:
    return {
        "status": "graded",
        "functions": {FREQS: verdict(*freqs), LOSS: verdict(*loss)},
    }


def sample_notebooks() -> list[tuple[str, str, dict]]:
    """(file name, notebook text, expected manifest entry) for each sample."""
    samples: list[tuple[str, str, dict]] = []

    def add(name: str, nb: dict, expected: dict) -> None:
        samples.append((name, serialise(nb), expected))

    def add_v4(name: str, cells: list, expected: dict, **kw) -> None:
        add(name, build_v4(name.removesuffix(".ipynb"), cells, **kw), expected)

    add_v4(
        "correct_keras_backend.ipynb",
        standard_cells(imports=IMPORTS_KERAS, freqs=freqs_cell(FREQS_MEAN),
                       loss=loss_cell(LOSS_K_LOOP)),
        graded(),
        kernel="python3", minor=4,
    )
    add_v4(
        "correct_tensorflow_ops.ipynb",
        standard_cells(imports=IMPORTS_TF, freqs=freqs_cell(FREQS_SUM_SHAPE),
                       loss=loss_cell(LOSS_TF_OPS), own_check=True,
                       use_labels_var=True),
        graded(),
        kernel="tfgpu", py="3.8.10",
    )
    add_v4(
        "correct_vectorised.ipynb",
        standard_cells(imports=IMPORTS_MIXED,
                       freqs=freqs_cell(FREQS_COUNT_NONZERO),
                       loss=loss_cell(LOSS_VECTORISED), loss_test=TEST_LOSS_VAR),
        graded(),
        kernel="conda",
    )
    add_v4(
        "correct_minus_equals.ipynb",
        standard_cells(imports=IMPORTS_KERAS, freqs=freqs_cell(FREQS_LOOP),
                       loss=loss_cell(LOSS_MINUS_EQUALS), plot_weights=False),
        graded(),
        kernel="ipykernel", py="3.9.13",
    )
    add_v4(
        "sum_instead_of_mean.ipynb",
        standard_cells(
            imports=IMPORTS_KERAS, freqs=freqs_cell(FREQS_MEAN),
            loss=loss_cell(LOSS_K_SUM),
            loss_out=("stream", "Loss with y_pred = 0.7: -1.9824812\n"
                                "Loss with y_pred = 0.3: -1.9824812\n"
                                "\x1b[91m 2 tests failed.\n")),
        graded(loss=("loss.sum_instead_of_mean",)),
        kernel="python3",
    )
    add_v4(
        "missing_epsilon.ipynb",
        standard_cells(imports=IMPORTS_MIXED, freqs=freqs_cell(FREQS_SUM_SHAPE),
                       loss=loss_cell(LOSS_NO_EPSILON), loss_out=None),
        graded(loss=("loss.missing_epsilon",)),
        kernel="conda", minor=4,
    )
    add_v4(
        "numpy_result.ipynb",
        standard_cells(
            imports=IMPORTS_TF, freqs=freqs_cell(FREQS_MEAN),
            loss=loss_cell(LOSS_NUMPY),
            loss_out=out_error(
                "AttributeError",
                "'numpy.float32' object has no attribute 'numpy'",
                "----> 1 get_weighted_loss_test(get_weighted_loss, epsilon=1)")),
        graded(loss=("loss.numpy_result",)),
        kernel="ipykernel", py="3.10.12",
    )
    add_v4(
        "three_headline_mistakes.ipynb",
        standard_cells(imports=IMPORTS_KERAS, freqs=freqs_cell(FREQS_LOOP),
                       loss=loss_cell(LOSS_THREE_MISTAKES), loss_out=None),
        graded(loss=("loss.sum_instead_of_mean", "loss.missing_epsilon",
                     "loss.numpy_result")),
        kernel="python3", executed=False,
    )
    add_v4(
        "swapped_weights.ipynb",
        standard_cells(imports=IMPORTS_KERAS, freqs=freqs_cell(FREQS_MEAN),
                       loss=loss_cell(LOSS_SWAPPED), loss_out=None,
                       use_labels_var=True),
        graded(loss=("loss.swapped_weights",)),
        kernel="conda",
    )
    add_v4(
        "wrong_axis.ipynb",
        standard_cells(
            imports=IMPORTS_MIXED, freqs=freqs_cell(FREQS_WRONG_AXIS),
            loss=loss_cell(LOSS_K_LOOP),
            freqs_out=("stream", "\x1b[91m Wrong output shape.\n"
                                 "\x1b[91m 1 tests failed.\n")),
        graded(freqs=("freqs.wrong_axis",)),
        kernel="python3", minor=4,
    )
    add_v4(
        "syntax_error.ipynb",
        standard_cells(
            imports=IMPORTS_KERAS, freqs=freqs_cell(FREQS_MEAN),
            loss=loss_cell(LOSS_SYNTAX_ERROR),
            loss_cell_out=(
                "error", "SyntaxError", "'(' was never closed",
                ["  Cell In[13], line 32\n"
                 "    pos_loss = pos_weights[i] * y_true[:, i] * K.log("
                 "y_pred[:, i] + epsilon\n"
                 "                                                    ^\n",
                 "SyntaxError: '(' was never closed\n"]),
            loss_out=out_error(
                "NameError", "name 'get_weighted_loss' is not defined",
                "----> 1 get_weighted_loss_test(get_weighted_loss, epsilon=1)")),
        graded(loss=("function.syntax_error",)),
        kernel="ipykernel",
    )
    add_v4(
        "missing_function.ipynb",
        standard_cells(
            imports=IMPORTS_TF, freqs=freqs_cell(FREQS_COUNT_NONZERO),
            loss=loss_cell(LOSS_K_LOOP, name="get_weighted_los"),
            loss_out=out_error(
                "NameError", "name 'get_weighted_loss' is not defined",
                "----> 1 get_weighted_loss_test(get_weighted_loss, epsilon=1)")),
        graded(loss=("function.missing",)),
        kernel="tfgpu", py="3.8.10",
    )
    add_v4(
        "none_placeholders.ipynb",
        standard_cells(imports=IMPORTS_KERAS, freqs=freqs_cell(FREQS_NONE),
                       loss=loss_cell(LOSS_NONE), freqs_out=None, loss_out=None,
                       load_weights=False),
        graded(freqs=("freqs.unfinished",), loss=("loss.unfinished",)),
        kernel="python3", executed=False,
    )

    v3_cells = standard_cells(imports=IMPORTS_KERAS,
                              freqs=freqs_cell(FREQS_METHOD),
                              loss=loss_cell(LOSS_K_LOOP))
    add("nbformat3_correct.ipynb", build_v3("nbformat3_correct", v3_cells),
        graded())

    fixed_copy = [
        code("# the first version summed instead of averaging, fixed below"),
        code(loss_cell(LOSS_K_LOOP)),
        code(TEST_LOSS, OUT_LOSS_PASS),
    ]
    add_v4(
        "defined_twice_last_correct.ipynb",
        standard_cells(
            imports=IMPORTS_MIXED, freqs=freqs_cell(FREQS_MEAN),
            loss=loss_cell(LOSS_K_SUM),
            loss_out=("stream", "\x1b[91m 2 tests failed.\n"),
            after_loss_test=fixed_copy),
        graded(),
        kernel="conda",
    )
    experiment = [code(loss_cell(LOSS_NO_EPSILON))]
    add_v4(
        "defined_twice_last_wrong.ipynb",
        standard_cells(imports=IMPORTS_KERAS, freqs=freqs_cell(FREQS_LOOP),
                       loss=loss_cell(LOSS_K_LOOP), after_model=experiment),
        graded(loss=("loss.missing_epsilon",)),
        kernel="python3",
    )
    add_v4(
        "magics_everywhere.ipynb",
        standard_cells(imports=IMPORTS_MAGIC, freqs=freqs_cell(FREQS_MEAN),
                       loss=loss_cell(LOSS_K_LOOP, prefix="%%time\n"),
                       loss_cell_out=("stream", "CPU times: user 5 us, sys: 0 ns, "
                                                "total: 5 us\nWall time: 9.3 us\n"),
                       train_run=True),
        graded(),
        kernel="ipykernel", py="3.10.12",
    )
    add_v4(
        "uses_global_data.ipynb",
        standard_cells(imports=IMPORTS_TF, freqs=freqs_cell(FREQS_GLOBAL),
                       loss=loss_cell(LOSS_TF_OPS), freqs_out=None),
        graded(freqs=("function.uses_global",)),
        kernel="tfgpu", minor=4,
    )

    # A real, complete notebook whose bytes were cut off half way through.
    whole = serialise(build_v4(
        "truncated",
        standard_cells(imports=IMPORTS_KERAS, freqs=freqs_cell(FREQS_MEAN),
                       loss=loss_cell(LOSS_K_LOOP)),
        kernel="python3"))
    samples.append(("truncated.ipynb", whole[: len(whole) // 2],
                     {"status": "error", "error_kind": "invalid_json"}))
    return samples


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for name, text, expected in sample_notebooks():
        (OUT_DIR / name).write_text(text, encoding="utf-8")
        manifest[name] = expected
    MANIFEST.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n",
                        encoding="utf-8")
    print(f"wrote {len(manifest)} notebooks and {MANIFEST.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
