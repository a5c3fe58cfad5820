//! Named starting points for `gradscope train --preset NAME`. Each is a TOML fragment laid
//! over the defaults, so a preset says only what makes it what it is.

/// (name, what it shows, TOML overlay)
pub const PRESETS: &[(&str, &str, &str)] = &[
    (
        "mlp",
        "the default: 6 hidden ReLU layers of 128, He init, Adam; healthy gradient flow",
        "",
    ),
    (
        "deep-sigmoid",
        "10 sigmoid layers with a small normal init and SGD: the textbook vanishing gradient",
        "depth = 10\nwidth = 64\nactivation = \"sigmoid\"\ninit = \"normal\"\noptimizer = \"sgd\"\nlr = 0.1\n",
    ),
    (
        "deep-tanh",
        "10 tanh layers with Xavier init and momentum: saturation without collapse",
        "depth = 10\nwidth = 64\nactivation = \"tanh\"\ninit = \"xavier_normal\"\noptimizer = \"momentum\"\nlr = 0.01\n",
    ),
    (
        "sigmoid-mse",
        "Nielsen's classic: 3 sigmoid layers of 30 trained with MSE and SGD",
        "depth = 3\nwidth = 30\nactivation = \"sigmoid\"\ninit = \"normal\"\nloss = \"mse\"\noptimizer = \"sgd\"\nlr = 3.0\nbatch_size = 10\n",
    ),
    (
        "wide-relu",
        "2 hidden ReLU layers of 256 (784-256-256-10), the benchmark network",
        "depth = 2\nwidth = 256\n",
    ),
    (
        "lenet5",
        "LeNet-5 (two 5×5 convolutions with max pooling, three dense layers) on 28×28 images",
        "model = \"lenet5\"\noptimizer = \"momentum\"\nlr = 0.01\n",
    ),
    (
        "resnet20",
        "He et al.'s CIFAR ResNet-20 with BatchNorm (3 stages of 16/32/64 channels)",
        "model = \"resnet20\"\noptimizer = \"momentum\"\nlr = 0.1\nweight_decay = 0.0001\naugment = true\n",
    ),
    (
        "plain20",
        "the same 20 layers without shortcuts, for the degradation the shortcuts remove",
        "model = \"plain20\"\noptimizer = \"momentum\"\nlr = 0.1\nweight_decay = 0.0001\naugment = true\n",
    ),
    (
        "dwsep",
        "a small depthwise-separable network (3×3 depthwise + 1×1 pointwise blocks)",
        "model = \"dwsep\"\noptimizer = \"adam\"\nlr = 0.001\n",
    ),
    (
        "rnn-adding",
        "a tanh RNN on the adding problem (T = 50): carry two marked values to the end; MSE baseline 0.167",
        "model = \"rnn\"\ntask = \"adding\"\nseq_len = 50\nhidden_size = 64\nbatch_size = 64\nmax_steps = 2000\nepochs = 100\noptimizer = \"adam\"\nlr = 0.001\nclip_norm = 1.0\n",
    ),
    (
        "lstm-adding",
        "an LSTM (forget bias 1) on the adding problem (T = 50): carry two marked values to the end; MSE baseline 0.167",
        "model = \"lstm\"\ntask = \"adding\"\nseq_len = 50\nhidden_size = 64\nbatch_size = 64\nmax_steps = 2000\nepochs = 100\noptimizer = \"adam\"\nlr = 0.001\nclip_norm = 1.0\nforget_bias = 1.0\n",
    ),
    (
        "gru-adding",
        "a GRU on the adding problem (T = 50): carry two marked values to the end; MSE baseline 0.167",
        "model = \"gru\"\ntask = \"adding\"\nseq_len = 50\nhidden_size = 64\nbatch_size = 64\nmax_steps = 2000\nepochs = 100\noptimizer = \"adam\"\nlr = 0.001\nclip_norm = 1.0\n",
    ),
    (
        "rnn-memory",
        "a tanh RNN on recalling the first of 4 symbols after T = 20 steps of distractors (chance 25 %)",
        "model = \"rnn\"\ntask = \"memory\"\nseq_len = 20\nhidden_size = 64\nbatch_size = 64\nmax_steps = 2000\nepochs = 100\noptimizer = \"adam\"\nlr = 0.001\nclip_norm = 1.0\n",
    ),
    (
        "lstm-memory",
        "an LSTM (forget bias 1) on recalling the first of 4 symbols after T = 20 steps of distractors (chance 25 %)",
        "model = \"lstm\"\ntask = \"memory\"\nseq_len = 20\nhidden_size = 64\nbatch_size = 64\nmax_steps = 2000\nepochs = 100\noptimizer = \"adam\"\nlr = 0.001\nclip_norm = 1.0\nforget_bias = 1.0\n",
    ),
    (
        "gru-memory",
        "a GRU on recalling the first of 4 symbols after T = 20 steps of distractors (chance 25 %)",
        "model = \"gru\"\ntask = \"memory\"\nseq_len = 20\nhidden_size = 64\nbatch_size = 64\nmax_steps = 2000\nepochs = 100\noptimizer = \"adam\"\nlr = 0.001\nclip_norm = 1.0\n",
    ),
    (
        "rnn-rows",
        "a tanh RNN on Fashion-MNIST read row by row (28 steps of 28 pixels)",
        "model = \"rnn\"\ntask = \"rows\"\nseq_len = 28\nhidden_size = 128\nbatch_size = 64\nepochs = 3\noptimizer = \"adam\"\nlr = 0.001\nclip_norm = 1.0\n",
    ),
    (
        "lstm-rows",
        "an LSTM (forget bias 1) on Fashion-MNIST read row by row (28 steps of 28 pixels)",
        "model = \"lstm\"\ntask = \"rows\"\nseq_len = 28\nhidden_size = 128\nbatch_size = 64\nepochs = 3\noptimizer = \"adam\"\nlr = 0.001\nclip_norm = 1.0\nforget_bias = 1.0\n",
    ),
    (
        "gru-rows",
        "a GRU on Fashion-MNIST read row by row (28 steps of 28 pixels)",
        "model = \"gru\"\ntask = \"rows\"\nseq_len = 28\nhidden_size = 128\nbatch_size = 64\nepochs = 3\noptimizer = \"adam\"\nlr = 0.001\nclip_norm = 1.0\n",
    ),
];

pub fn find(name: &str) -> Option<&'static str> {
    PRESETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, t)| *t)
}

pub fn names() -> Vec<&'static str> {
    PRESETS.iter().map(|(n, _, _)| *n).collect()
}
