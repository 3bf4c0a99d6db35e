"""The nine graph nodes, in fer-edge's (and the thesis') order."""

EXPRESSIONS = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger"]
NODES = EXPRESSIONS + ["valence", "arousal"]
N_EXPR = 7
N_NODES = 9
# The words whose embeddings seed the graph (thesis: GloVe vectors of the labels).
NODE_WORDS = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "valence", "arousal"]
