"""Evaluation: perplexity now; CHAIR, POPE and zero-shot tasks as the methods arrive."""
