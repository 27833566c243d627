"""The lesson and the training core. It imports nothing from the tools above it.

The math:
    model        Network: every layer a^l = σ(W^l a^{l-1} + b^l); the prediction is argmax a^L
    cost         the quadratic cost C, defined once, and ∇_a C
    manual       the manual-backprop twin: forward, and BP1-BP4 in raw tensor operations
    engines      manual or autograd: fill each .grad with ∇C for one mini-batch

Training:
    settings     TrainingSettings (decide the result) and RunOptions (where and how it runs)
    data         MNIST as tensors, and the shuffled mini-batches
    loop         train_one_epoch (the reference loop) and train
    sgd          the run's torch.optim.SGD, held as a plan until asked for, and η per epoch
    compiled     the fast path of --compile: the same steps, 16 to one compiled call
    run          the Run a callback sees, and Callback
    evaluate     cost and accuracy over a split
    guard        Ctrl-C, SIGTERM and divergence
    checkpoint   the checkpoint format; resume continues from one bit for bit
    distributed  torchrun: data parallelism, and the ranks agreeing to stop
"""
