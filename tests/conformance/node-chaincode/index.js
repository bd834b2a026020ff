'use strict';
// A chaincode written with Fabric's official Node contract API. The conformance test
// serves it with `fabric-chaincode-node server` and invokes it through the devnet.
const { Contract } = require('fabric-contract-api');

class NodeAssets extends Contract {
    constructor() {
        super('NodeAssets');
    }

    async Put(ctx, key, value) {
        await ctx.stub.putState(key, Buffer.from(value));
        ctx.stub.setEvent('Put', Buffer.from(key));
        return value;
    }

    async Get(ctx, key) {
        const value = await ctx.stub.getState(key);
        if (!value || value.length === 0) {
            throw new Error(`${key} does not exist`);
        }
        return value.toString();
    }

    async Keys(ctx, start, end) {
        const keys = [];
        for await (const result of ctx.stub.getStateByRange(start, end)) {
            keys.push(result.key);
        }
        return JSON.stringify(keys);
    }

    async WhoAmI(ctx) {
        return JSON.stringify({
            mspid: ctx.clientIdentity.getMSPID(),
            role: ctx.clientIdentity.getAttributeValue('role'),
            time: ctx.stub.getDateTimestamp().toISOString(),
        });
    }
}

module.exports.contracts = [NodeAssets];
