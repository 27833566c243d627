"""Seeing inside a trained network: the pieces of ``gd-torch analyze``.

sensitivity   ∇C over the whole training set, read as how sensitive the cost is to each weight
one_weight    the cost along one weight, and gradient descent on that weight alone
outputs       what the network answers for test digits and for random noise; its mistakes
figures       the matplotlib figures (green positive, red negative, black zero)
report        the analyze command: figures as PNG files and into TensorBoard, and a text summary
"""
