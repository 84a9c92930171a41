"""Answers to notebook 06's exercises: ``get_query_img_embedding``, ``get_embeddings``, ``find_closest``.

``*_CORRECT`` must pass their grader; ``*_STUBS`` and every ``*_MUTANTS`` entry must fail it.
Each mutant maps to ``(function, name of a case that must fail)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from helper_utils.reference import val_transform

# --------------------------------------------------------------------------- get_query_img_embedding


def query_tutorial(encoder, transform, img, device):
    encoder.eval()
    with torch.no_grad():
        query_img_tensor = transform(img).unsqueeze(0).to(device)
        query_embedding = encoder(query_img_tensor).cpu().numpy()
    return query_embedding


def query_inference_mode(encoder, transform, img, device):
    encoder.eval()
    with torch.inference_mode():
        return encoder(transform(img)[None].to(torch.device(device))).numpy().reshape(1, -1)


QUERY_CORRECT = {"tutorial": query_tutorial, "inference_mode + reshape": query_inference_mode}


def query_stub(encoder, transform, img, device):
    encoder.eval()
    with torch.no_grad():
        query_img_tensor = None
        query_embedding = None
    return query_embedding


QUERY_STUBS = {"None placeholder": None, "stub function": query_stub}


def query_no_eval(encoder, transform, img, device):
    with torch.no_grad():
        return encoder(transform(img).unsqueeze(0).to(device)).cpu().numpy()


def query_no_grad_missing(encoder, transform, img, device):
    encoder.eval()
    return encoder(transform(img).unsqueeze(0).to(device)).detach().cpu().numpy()


def query_other_transform(encoder, transform, img, device):
    encoder.eval()
    with torch.no_grad():
        return encoder(val_transform(img).unsqueeze(0).to(device)).cpu().numpy()


def query_squeezed(encoder, transform, img, device):
    encoder.eval()
    with torch.no_grad():
        return encoder(transform(img).unsqueeze(0).to(device)).cpu().numpy()[0]


def query_returns_tensor(encoder, transform, img, device):
    encoder.eval()
    with torch.no_grad():
        return encoder(transform(img).unsqueeze(0).to(device))


def query_no_unsqueeze(encoder, transform, img, device):
    encoder.eval()
    with torch.no_grad():
        return encoder(transform(img).to(device)).cpu().numpy()


def query_returns_list(encoder, transform, img, device):
    encoder.eval()
    with torch.no_grad():
        return encoder(transform(img).unsqueeze(0).to(device)).tolist()


QUERY_MUTANTS = {
    "no eval()": (query_no_eval, "puts the encoder in eval mode"),
    "detach instead of no_grad": (query_no_grad_missing, "runs without gradients"),
    "ignores the transform argument": (query_other_transform, "equals encoder(transform(img)) in eval mode"),
    "shape (D,)": (query_squeezed, "returns a float NumPy array of shape (1, D)"),
    "returns a tensor": (query_returns_tensor, "returns a float NumPy array of shape (1, D)"),
    "no batch dimension": (query_no_unsqueeze, "runs on a PIL image"),
    "returns a list": (query_returns_list, "returns a float NumPy array of shape (1, D)"),
}


# --------------------------------------------------------------------------- get_embeddings


def embeddings_tutorial(encoder, dataset, device, batch_size=64):
    encoder.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    embeddings = []
    with torch.no_grad():
        for images, _ in loader:
            embeddings.append(encoder(images.to(device)).cpu().numpy())
    return np.concatenate(embeddings)


def embeddings_by_index(encoder, dataset, device, batch_size=32):
    """Another correct answer: slices of indices, torch.stack, np.vstack, float64."""
    encoder.eval()
    rows = []
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            batch = torch.stack([dataset[i][0] for i in range(start, min(start + batch_size, len(dataset)))])
            rows.append(encoder(batch.to(device)).double().numpy())
    return np.vstack(rows)


EMBEDDINGS_CORRECT = {"tutorial": embeddings_tutorial, "index slices": embeddings_by_index}


def embeddings_stub(encoder, dataset, device, batch_size=64):
    encoder.eval()
    loader = None
    embeddings = []
    with torch.no_grad():
        for images, _ in []:
            embeddings.append(None)
    return None


EMBEDDINGS_STUBS = {"None placeholder": None, "stub function": embeddings_stub}


def embeddings_shuffled(encoder, dataset, device, batch_size=64):
    encoder.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True)
    with torch.no_grad():
        return np.concatenate([encoder(images.to(device)).numpy() for images, _ in loader])


def embeddings_drop_last(encoder, dataset, device, batch_size=64):
    encoder.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, drop_last=True)
    with torch.no_grad():
        return np.concatenate([encoder(images.to(device)).numpy() for images, _ in loader])


def embeddings_train_mode(encoder, dataset, device, batch_size=64):
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    with torch.no_grad():
        return np.concatenate([encoder(images.to(device)).numpy() for images, _ in loader])


def embeddings_last_batch_only(encoder, dataset, device, batch_size=64):
    encoder.eval()
    with torch.no_grad():
        for images, _ in DataLoader(dataset, batch_size=batch_size):
            embeddings = encoder(images.to(device)).numpy()
    return embeddings


def embeddings_returns_tensor(encoder, dataset, device, batch_size=64):
    encoder.eval()
    with torch.no_grad():
        return torch.cat([encoder(images.to(device)) for images, _ in DataLoader(dataset, batch_size=batch_size)])


def embeddings_returns_list(encoder, dataset, device, batch_size=64):
    encoder.eval()
    with torch.no_grad():
        return [encoder(images.to(device)).numpy() for images, _ in DataLoader(dataset, batch_size=batch_size)]


def embeddings_stacked_batches(encoder, dataset, device, batch_size=64):
    """np.array of the per-batch arrays: (batches, B, D), or an error when the last batch is smaller."""
    encoder.eval()
    with torch.no_grad():
        batches = [encoder(images.to(device)).numpy() for images, _ in DataLoader(dataset, batch_size=batch_size)]
    return np.array(batches)


def embeddings_no_default(encoder, dataset, device, batch_size):
    return embeddings_tutorial(encoder, dataset, device, batch_size)


EMBEDDINGS_MUTANTS = {
    "shuffled loader": (embeddings_shuffled, "rows match the encoder, in dataset order"),
    "drop_last": (embeddings_drop_last, "returns a float NumPy array (N, D), N not a multiple of batch_size"),
    "train mode": (embeddings_train_mode, "puts the encoder in eval mode"),
    "keeps only the last batch": (embeddings_last_batch_only,
                                  "returns a float NumPy array (N, D), N not a multiple of batch_size"),
    "returns a tensor": (embeddings_returns_tensor,
                         "returns a float NumPy array (N, D), N not a multiple of batch_size"),
    "returns a list": (embeddings_returns_list, "returns a float NumPy array (N, D), N not a multiple of batch_size"),
    "stacks batches": (embeddings_stacked_batches, "runs on a dataset of (image, label) pairs"),
    "batch_size without default": (embeddings_no_default, "default batch_size, torch.device, another encoder"),
}


# --------------------------------------------------------------------------- find_closest


def closest_tutorial(embeddings, query_embedding, k=5):
    distances = np.linalg.norm(embeddings - query_embedding, axis=1)
    return np.argsort(distances)[:k]


def closest_torch_topk(embeddings, query_embedding, k=5):
    """Another correct answer: squared distances with torch, topk of the negatives."""
    e = torch.as_tensor(embeddings)
    q = torch.as_tensor(query_embedding).reshape(1, -1)
    d2 = ((e - q) ** 2).sum(dim=1)
    return torch.topk(-d2, k=min(k, len(e))).indices.numpy()


def closest_cdist(embeddings, query_embedding, k=5):
    d = torch.cdist(torch.as_tensor(np.atleast_2d(query_embedding)), torch.as_tensor(embeddings))[0]
    return np.argsort(d.numpy(), kind="stable")[:k]


CLOSEST_CORRECT = {"tutorial": closest_tutorial, "torch topk": closest_torch_topk, "torch.cdist": closest_cdist}


def closest_stub(embeddings, query_embedding, k=5):
    distances = None
    closest_indices = None
    return closest_indices


CLOSEST_STUBS = {"None placeholder": None, "stub function": closest_stub}


def closest_descending(embeddings, query_embedding, k=5):
    distances = np.linalg.norm(embeddings - query_embedding, axis=1)
    return np.argsort(distances)[::-1][:k]


def closest_cosine(embeddings, query_embedding, k=5):
    q = query_embedding.reshape(-1)
    sims = embeddings @ q / (np.linalg.norm(embeddings, axis=1) * np.linalg.norm(q))
    return np.argsort(-sims)[:k]


def closest_dot(embeddings, query_embedding, k=5):
    return np.argsort(-(embeddings @ query_embedding.reshape(-1)))[:k]


def closest_manhattan(embeddings, query_embedding, k=5):
    return np.argsort(np.abs(embeddings - query_embedding).sum(axis=1))[:k]


def closest_returns_distances(embeddings, query_embedding, k=5):
    distances = np.linalg.norm(embeddings - query_embedding, axis=1)
    return np.sort(distances)[:k]


def closest_k_plus_one(embeddings, query_embedding, k=5):
    distances = np.linalg.norm(embeddings - query_embedding, axis=1)
    return np.argsort(distances)[: k + 1]


def closest_skips_first(embeddings, query_embedding, k=5):
    """Drops the nearest item as if it were the query itself."""
    distances = np.linalg.norm(embeddings - query_embedding, axis=1)
    return np.argsort(distances)[1: k + 1]


def closest_argmax(embeddings, query_embedding, k=5):
    return np.argmax(np.linalg.norm(embeddings - query_embedding, axis=1))


def closest_returns_list(embeddings, query_embedding, k=5):
    distances = np.linalg.norm(embeddings - query_embedding, axis=1)
    return list(np.argsort(distances)[:k])


def closest_returns_tensor(embeddings, query_embedding, k=5):
    return torch.as_tensor(closest_tutorial(embeddings, query_embedding, k))


def closest_no_axis(embeddings, query_embedding, k=5):
    """np.linalg.norm without axis=1: one number for the whole matrix."""
    distances = np.linalg.norm(embeddings - query_embedding)
    return np.argsort(np.atleast_1d(distances))[:k]


def closest_no_axis_sliced(embeddings, query_embedding, k=5):
    """np.linalg.norm without axis=1, then argsort of that single number."""
    distances = np.linalg.norm(embeddings - query_embedding)
    return np.argsort(distances)[:k]


def closest_in_place(embeddings, query_embedding, k=5):
    """Right ranking, but subtracts the query from the caller's catalog in place."""
    embeddings -= query_embedding
    return np.argsort(np.linalg.norm(embeddings, axis=1))[:k]


CLOSEST_MUTANTS = {
    "descending order": (closest_descending, "nearest first by Euclidean distance (query (1, D), k=3)"),
    "cosine similarity": (closest_cosine, "nearest first by Euclidean distance (query (1, D), k=3)"),
    "dot product": (closest_dot, "k=1 gives the single nearest"),
    "Manhattan distance": (closest_manhattan, "nearest first by Euclidean distance (query (1, D), k=3)"),
    "returns distances": (closest_returns_distances, "returns k integer indices as a NumPy array"),
    "k + 1 indices": (closest_k_plus_one, "returns k integer indices as a NumPy array"),
    "skips the nearest": (closest_skips_first, "k=1 gives the single nearest"),
    "argmax": (closest_argmax, "returns k integer indices as a NumPy array"),
    "returns a list": (closest_returns_list, "returns k integer indices as a NumPy array"),
    "returns a tensor": (closest_returns_tensor, "returns k integer indices as a NumPy array"),
    "norm without axis": (closest_no_axis, "norm per row: axis=1"),
    "norm without axis, argsort sliced": (closest_no_axis_sliced, "norm per row: axis=1"),
    "subtracts in place": (closest_in_place, "changed the embeddings passed in"),
}
