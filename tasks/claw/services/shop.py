"""The shop service: a product catalog with stock, and the owner's orders."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from orchard_envs.tasks.claw.services.base import ApiError, Body, Collection, Service, State, text_matches

router = APIRouter()
CANCELLABLE = frozenset({"placed", "pending", "processing"})  # shipped or delivered: too late to cancel


class OrderBody(Body):
    """An order: a product, a quantity and where to send it."""
    product_id: str = Field(min_length=1)
    quantity: int = Field(ge=1)
    address: str = Field(min_length=1)


@router.get("/products")
async def search(state: State, query: str) -> list[dict[str, Any]]:
    """Products whose name, description or category match `query`."""
    fields = ("name", "description", "category")
    return [p for p in state.records("products") if text_matches(query, p, fields)]


@router.post("/orders", status_code=201)
async def order(request: OrderBody, state: State) -> dict[str, Any]:
    """Place an order, taking it from stock; more than is in stock is a 409."""
    product = state.get("products", request.product_id)
    stock = int(product.get("stock") or 0)
    if stock < request.quantity:
        raise ApiError(409, f"only {stock} of {product.get('name', product['id'])!r} in stock, "
                            f"asked for {request.quantity}")
    product["stock"] = stock - request.quantity
    total = round(float(product.get("price") or 0) * request.quantity, 2)
    return state.insert("orders", {
        "product_id": product["id"], "quantity": request.quantity, "status": "placed",
        "address": request.address, "total": total,
    })


@router.get("/orders")
async def orders(state: State) -> list[dict[str, Any]]:
    """Every order, placed or cancelled."""
    return state.records("orders")


@router.post("/orders/{id}/cancel")
async def cancel(id: str, state: State) -> dict[str, Any]:
    """Cancel an order while still possible, returning its quantity to stock."""
    placed = state.get("orders", id)
    status = str(placed.get("status") or "")
    if status == "cancelled":
        raise ApiError(409, f"order {id!r} is already cancelled")
    if status not in CANCELLABLE:
        raise ApiError(409, f"order {id!r} is {status or 'in an unknown state'}: too late to cancel")
    placed["status"] = "cancelled"
    for product in state.records("products"):  # the stock comes back, if the product is still sold
        if product["id"] == placed.get("product_id"):
            product["stock"] = int(product.get("stock") or 0) + int(placed.get("quantity") or 0)
    return placed


PRODUCTS_FIELDS = ("id", "name", "price", "stock", "description", "category")
ORDERS_FIELDS = ("id", "product_id", "quantity", "status", "address", "total")
SERVICE = Service(
    "shop",
    {
        "products": Collection("p", "product", PRODUCTS_FIELDS),
        "orders": Collection("o", "order", ORDERS_FIELDS),
    },
    router,
)
